package ledger

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStoreRoundTripAndAppendOnly(t *testing.T) {
	dir := t.TempDir()
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &Ceremony{ID: NewID("Soft HSM/1", time.Unix(0, 0)), Repository: "A", Status: Open,
		Keys: []KeyRecord{{Locator: "aa"}}}
	if !strings.HasPrefix(c.ID, "19700101T000000Z-Soft_HSM_1-") {
		t.Errorf("id %q", c.ID)
	}
	if err := s.SaveOpen(c); err != nil {
		t.Fatal(err)
	}
	c.Status = Confirmed
	if err := s.End(c); err != nil {
		t.Fatal(err)
	}
	// Ending the same ceremony again (an interrupted run) records it once.
	if err := s.End(c); err != nil {
		t.Fatal(err)
	}
	s2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s2.History()) != 1 || s2.Open("A") != nil || s2.LastConfirmed("A") == nil {
		t.Fatalf("history %v, open %v", s2.History(), s2.Open("A"))
	}
	if s2.Coverage().Covering("A", "AA") == nil {
		t.Error("coverage is not case-insensitive")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(matches) > 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}

func TestCorruptFilesAreReported(t *testing.T) {
	dir := t.TempDir()
	s, _ := Load(dir)
	s.End(&Ceremony{ID: "x", Repository: "A", Status: Confirmed})
	path := filepath.Join(dir, "history.json")
	good, _ := os.ReadFile(path)
	for name, data := range map[string]string{
		"truncated": string(good[:len(good)/2]),
		"edited":    strings.Replace(string(good), `"id": "x"`, `"id": "y"`, 1),
		"format":    strings.Replace(string(good), "history/1", "history/9", 1),
	} {
		os.WriteFile(path, []byte(data), 0o600)
		_, err := Load(dir)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Path != path {
			t.Errorf("%s: got %v", name, err)
		}
		if b, _ := os.ReadFile(path); string(b) != data {
			t.Errorf("%s: the file was changed", name)
		}
	}
}

func TestLockWaitsThenFails(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Acquire(dir, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "held by ods-keyguard pid") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Error("did not wait")
	}
	l.Release()
	l2, err := Acquire(dir, time.Second)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.Release()
}
