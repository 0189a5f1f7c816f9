package zonereview

import (
	"bytes"
	"fmt"
	"math/bits"
	"sort"

	"github.com/miekg/dns"
)

// Names are kept in wire format, lower case (ASCII, as RFC 4034 section 6.2
// asks), with the root label's zero byte: compact, and exact for names with
// escaped characters, whose presentation has more than one spelling.

// wireName converts a presentation name to its lower-case wire form.
func wireName(s string) (string, error) {
	var buf [256]byte
	n, err := dns.PackDomainName(dns.Fqdn(s), buf[:], 0, nil, false)
	if err != nil {
		return "", fmt.Errorf("name %q: %w", s, err)
	}
	lowerWire(buf[:n])
	return string(buf[:n]), nil
}

// lowerWire lower-cases the ASCII letters of a wire name in place. Length
// octets are at most 63, below 'A', so they are left alone.
func lowerWire(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// presentation turns a wire name back into text, for findings only.
func presentation(w string) string {
	s, _, err := dns.UnpackDomainName([]byte(w), 0)
	if err != nil {
		return fmt.Sprintf("%q", w)
	}
	return s
}

// labelOffsets writes the offsets of w's labels (not the root) into off and
// returns how many there are.
func labelOffsets(w string, off *[128]uint8) int {
	n := 0
	for i := 0; i < len(w) && w[i] != 0 && n < len(off); i += int(w[i]) + 1 {
		off[n] = uint8(i)
		n++
	}
	return n
}

// labelCount is the number of labels of w, not counting the root.
func labelCount(w string) int {
	var off [128]uint8
	return labelOffsets(w, &off)
}

// parentName drops w's first label; the root stays the root.
func parentName(w string) string {
	if len(w) == 0 || w[0] == 0 {
		return w
	}
	return w[1+int(w[0]):]
}

// isBelow says whether w is at or below parent.
func isBelow(w, parent string) bool {
	if len(w) < len(parent) || w[len(w)-len(parent):] != parent {
		return false
	}
	for i := 0; i < len(w); i += int(w[i]) + 1 {
		if i == len(w)-len(parent) {
			return true
		}
		if w[i] == 0 {
			break
		}
	}
	return false
}

// compareNames orders wire names canonically (RFC 4034 section 6.1): label
// by label from the right, each label as a string of octets.
func compareNames(a, b string) int {
	if a == b {
		return 0
	}
	var ao, bo [128]uint8
	na, nb := labelOffsets(a, &ao), labelOffsets(b, &bo)
	for na > 0 && nb > 0 {
		na--
		nb--
		la := a[int(ao[na])+1 : int(ao[na])+1+int(a[ao[na]])]
		lb := b[int(bo[nb])+1 : int(bo[nb])+1+int(b[bo[nb]])]
		if c := bytes.Compare([]byte(la), []byte(lb)); c != 0 {
			return c
		}
	}
	switch {
	case na > 0:
		return 1
	case nb > 0:
		return -1
	}
	return 0
}

// typeSet is a set of RR types: a bit per type below 128, and a slice for
// the rare types above.
type typeSet struct {
	lo, hi uint64
	ext    *[]uint16
}

func (s *typeSet) add(t uint16) {
	switch {
	case t < 64:
		s.lo |= 1 << t
	case t < 128:
		s.hi |= 1 << (t - 64)
	default:
		if s.has(t) {
			return
		}
		if s.ext == nil {
			s.ext = new([]uint16)
		}
		*s.ext = append(*s.ext, t)
		sort.Slice(*s.ext, func(i, j int) bool { return (*s.ext)[i] < (*s.ext)[j] })
	}
}

func (s typeSet) has(t uint16) bool {
	switch {
	case t < 64:
		return s.lo&(1<<t) != 0
	case t < 128:
		return s.hi&(1<<(t-64)) != 0
	}
	if s.ext != nil {
		for _, x := range *s.ext {
			if x == t {
				return true
			}
		}
	}
	return false
}

func (s typeSet) empty() bool {
	return s.lo == 0 && s.hi == 0 && (s.ext == nil || len(*s.ext) == 0)
}

// list is the set's types in ascending order.
func (s typeSet) list() []uint16 {
	var l []uint16
	for w, word := range [2]uint64{s.lo, s.hi} {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			l = append(l, uint16(w*64+b))
			word &^= 1 << b
		}
	}
	if s.ext != nil {
		l = append(l, *s.ext...)
	}
	return l
}

func (s typeSet) equal(o typeSet) bool {
	if s.lo != o.lo || s.hi != o.hi {
		return false
	}
	var a, b []uint16
	if s.ext != nil {
		a = *s.ext
	}
	if o.ext != nil {
		b = *o.ext
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (s typeSet) union(o typeSet) typeSet {
	r := typeSet{lo: s.lo | o.lo, hi: s.hi | o.hi}
	for _, set := range []typeSet{s, o} {
		if set.ext != nil {
			for _, t := range *set.ext {
				r.add(t)
			}
		}
	}
	return r
}

// minus is s without o's types.
func (s typeSet) minus(o typeSet) typeSet {
	r := typeSet{lo: s.lo &^ o.lo, hi: s.hi &^ o.hi}
	if s.ext != nil {
		for _, t := range *s.ext {
			if !o.has(t) {
				r.add(t)
			}
		}
	}
	return r
}

func typesOf(l []uint16) typeSet {
	var s typeSet
	for _, t := range l {
		s.add(t)
	}
	return s
}

func (s typeSet) String() string {
	var b bytes.Buffer
	for i, t := range s.list() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(typeString(t))
	}
	return b.String()
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}
