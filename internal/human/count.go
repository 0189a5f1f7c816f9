package human

import (
	"strconv"
	"strings"
)

// Count writes n with its noun, singular for one and plural otherwise:
// "1 problem", "2 problems", "0 keys". The noun is given in the singular
// and may be several words, of which the last takes the plural ("DS
// request"); an irregular plural is given as the second word list
// (Count(n, "ceremony") needs none: "ceremonies" follows the rule).
func Count(n int, singular string, plural ...string) string {
	return strconv.Itoa(n) + " " + Noun(n, singular, plural...)
}

// Noun is the noun of Count without the number: "problem" or "problems".
func Noun(n int, singular string, plural ...string) string {
	if n == 1 || n == -1 {
		return singular
	}
	if len(plural) > 0 {
		return plural[0]
	}
	return Plural(singular)
}

// Plural makes the regular English plural of a noun's last word: key ->
// keys, policy -> policies, class -> classes, DS request -> DS requests.
// An acronym (HSM, KSK) takes a plain s.
func Plural(singular string) string {
	i := strings.LastIndexByte(singular, ' ')
	head, w := singular[:i+1], singular[i+1:]
	if w == "" {
		return singular
	}
	if strings.ToUpper(w) == w {
		return head + w + "s"
	}
	switch {
	case strings.HasSuffix(w, "y") && len(w) > 1 && !strings.ContainsRune("aeiou", rune(w[len(w)-2])):
		return head + w[:len(w)-1] + "ies"
	case strings.HasSuffix(w, "s"), strings.HasSuffix(w, "x"), strings.HasSuffix(w, "ch"), strings.HasSuffix(w, "sh"):
		return head + w + "es"
	}
	return head + w + "s"
}
