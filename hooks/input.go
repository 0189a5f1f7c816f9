// Package hooks is the DS guard: what the enforcer's DS hooks receive, what
// they decide, what they forward, hold and record, and what the parent
// should hold as a result.
package hooks

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"

	"github.com/miekg/dns"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
)

// Submission is one DNSKEY record the enforcer handed to a hook.
type Submission struct {
	Line        string `json:"line"` // exactly as received, newline included
	Zone        string `json:"zone"` // lowercase, no trailing dot
	KeyTag      int    `json:"keytag"`
	Flags       int    `json:"flags"`
	Algorithm   int    `json:"algorithm"`
	PublicKey   []byte `json:"-"`
	Fingerprint string `json:"fingerprint"` // SHA-256 of the public key field
	CKAID       string `json:"cka_id,omitempty"`
	// Err says why the line is not a usable DNSKEY; the rest is then empty.
	Err string `json:"error,omitempty"`
}

// Limits on what a hook reads: the enforcer sends one line of a few hundred
// bytes per call.
const (
	MaxInput = 1 << 20
	MaxLine  = 4096
)

var ckaComment = regexp.MustCompile(`;\s*\{\s*cka_id\s*=\s*([0-9A-Fa-f]*)\s*\}\s*$`)

// parse reads DNSKEY records in presentation format, one per line: blank
// lines are skipped; tabs, trailing spaces and the enforcer's
// `; {cka_id = ...}` comment are tolerated. A line that is not a single
// DNSKEY (a zone-file directive such as $INCLUDE, a line over MaxLine bytes,
// binary data) comes back with Err set; input past MaxInput is one such
// line.
func parse(r io.Reader) ([]Submission, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	var rest []byte
	if len(data) > MaxInput {
		data, rest = data[:MaxInput], data[MaxInput:]
	}
	var out []Submission
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		var raw []byte
		if i < 0 {
			raw, data = data, nil
		} else {
			raw, data = data[:i+1], data[i+1:]
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		out = append(out, ParseLine(string(raw)))
	}
	if len(rest) > 0 {
		out = append(out, Submission{Line: string(rest), Err: fmt.Sprintf("more than %d bytes on stdin", MaxInput)})
	}
	return out, nil
}

// ParseLine parses one line.
func ParseLine(raw string) Submission {
	s := Submission{Line: raw}
	text := strings.TrimRight(raw, "\r\n")
	switch {
	case len(raw) > MaxLine:
		s.Err = fmt.Sprintf("a line of %d bytes, more than %d", len(raw), MaxLine)
		return s
	case strings.HasPrefix(strings.TrimSpace(text), "$"):
		s.Err = "a zone-file directive, refused"
		return s
	case strings.IndexFunc(text, func(r rune) bool { return r != '\t' && !unicode.IsPrint(r) }) >= 0:
		s.Err = "binary data, not a DNSKEY record"
		return s
	}
	if m := ckaComment.FindStringSubmatch(text); m != nil {
		s.CKAID = strings.ToLower(m[1])
		text = text[:len(text)-len(m[0])]
	}
	if strings.ContainsAny(text, "();\"") {
		s.Err = "not a single DNSKEY record"
		return s
	}
	zp := dns.NewZoneParser(strings.NewReader(text+"\n"), "", "")
	zp.SetIncludeAllowed(false)
	rr, ok := zp.Next()
	if err := zp.Err(); err != nil || !ok || rr == nil {
		s.Err = "not a DNSKEY record"
		if err != nil {
			s.Err += ": " + quietError(err)
		}
		return s
	}
	if _, more := zp.Next(); more {
		s.Err = "more than one record on a line"
		return s
	}
	key, ok := rr.(*dns.DNSKEY)
	if !ok {
		s.Err = fmt.Sprintf("a %s record, not a DNSKEY", dns.TypeToString[rr.Header().Rrtype])
		return s
	}
	pub, err := base64.StdEncoding.DecodeString(key.PublicKey)
	if err != nil || len(pub) == 0 {
		s.Err = "DNSKEY with an unreadable public key"
		return s
	}
	s.Zone = strings.TrimSuffix(strings.ToLower(key.Header().Name), ".")
	s.KeyTag = int(key.KeyTag())
	s.Flags = int(key.Flags)
	s.Algorithm = int(key.Algorithm)
	s.PublicKey = pub
	s.Fingerprint = hsmcheck.FingerprintDNSKEY(pub)
	return s
}

// quietError is a parser's error without what it quotes of the input,
// which has no business in a log line: "dns: bad TTL".
func quietError(err error) string {
	msg := err.Error()
	if pe, ok := err.(*dns.ParseError); ok {
		msg = "dns: " + strings.SplitN(strings.TrimPrefix(pe.Error(), "dns: "), ":", 2)[0]
	}
	if i := strings.IndexAny(msg, "\n\""); i >= 0 {
		msg = strings.TrimRight(msg[:i], ": ")
	}
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}

// Describe names a submission for logs: zone and key tag, or the first
// bytes of the line, escaped.
func (s Submission) Describe() string {
	if s.Err != "" {
		line := strings.TrimSpace(s.Line)
		if len(line) > 60 {
			line = line[:60] + "..."
		}
		return fmt.Sprintf("input %+q", line)
	}
	return fmt.Sprintf("zone %s key tag %d", s.Zone, s.KeyTag)
}
