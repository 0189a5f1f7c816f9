package human

import "testing"

func TestCount(t *testing.T) {
	for _, c := range []struct {
		n    int
		noun string
		irr  []string
		want string
	}{
		{1, "problem", nil, "1 problem"},
		{0, "problem", nil, "0 problems"},
		{2, "DS request", nil, "2 DS requests"},
		{1, "DS request", nil, "1 DS request"},
		{3, "policy", nil, "3 policies"},
		{3, "key", nil, "3 keys"},
		{2, "day", nil, "2 days"},
		{2, "class", nil, "2 classes"},
		{2, "HSM", nil, "2 HSMs"},
		{5, "open ceremony", nil, "5 open ceremonies"},
		{2, "key in use", []string{"keys in use"}, "2 keys in use"},
		{1, "key in use", []string{"keys in use"}, "1 key in use"},
	} {
		if got := Count(c.n, c.noun, c.irr...); got != c.want {
			t.Errorf("Count(%d, %q) = %q, want %q", c.n, c.noun, got, c.want)
		}
	}
}
