// Package hooks is what the enforcer's DS hooks receive and decide: which
// DNSKEY was piped in, which enforcer key it is, and whether its backup is
// confirmed so that its DS may go to the parent.
package hooks

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/miekg/dns"
)

// Submission is one DNSKEY record the enforcer handed to a hook.
type Submission struct {
	Line        string `json:"line"` // exactly as received, newline included
	Zone        string `json:"zone"` // lowercase, no trailing dot
	KeyTag      int    `json:"keytag"`
	Flags       int    `json:"flags"`
	Algorithm   int    `json:"algorithm"`
	Fingerprint string `json:"fingerprint"` // SHA-256 of the public key field
	CKAID       string `json:"cka_id,omitempty"`
	// Err says why the line is not a usable DNSKEY; the rest is then empty.
	Err string `json:"error,omitempty"`
}

// MaxInput bounds what a hook reads from stdin: the enforcer sends a line.
const MaxInput = 1 << 20

var ckaComment = regexp.MustCompile(`;\s*\{\s*cka_id\s*=\s*([0-9A-Fa-f]*)\s*\}\s*$`)

// Parse reads DNSKEY records in presentation format, one per line:
// blank lines are skipped; tabs, trailing spaces and the enforcer's
// `; {cka_id = ...}` comment are tolerated. A line that is not a DNSKEY
// comes back with Err set.
func Parse(r io.Reader) ([]Submission, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	if len(data) > MaxInput {
		return nil, fmt.Errorf("stdin: more than %d bytes", MaxInput)
	}
	var out []Submission
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), MaxInput)
	sc.Split(scanLinesKeepEOL)
	for sc.Scan() {
		raw := sc.Text()
		if strings.TrimSpace(raw) == "" {
			continue
		}
		out = append(out, ParseLine(raw))
	}
	return out, sc.Err()
}

// scanLinesKeepEOL splits after each '\n', keeping it, so a forward gets
// the bytes the enforcer sent.
func scanLinesKeepEOL(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// ParseLine parses one line.
func ParseLine(raw string) Submission {
	s := Submission{Line: raw}
	text := strings.TrimRight(raw, "\r\n")
	if m := ckaComment.FindStringSubmatch(text); m != nil {
		s.CKAID = strings.ToLower(m[1])
		text = text[:len(text)-len(m[0])]
	}
	if strings.ContainsAny(text, "();\"") {
		s.Err = "not a single DNSKEY record"
		return s
	}
	rr, err := dns.NewRR(text)
	if err != nil || rr == nil {
		s.Err = "not a DNSKEY record"
		if err != nil {
			s.Err += ": " + firstLine(err.Error())
		}
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
	sum := sha256.Sum256(pub)
	s.Zone = strings.TrimSuffix(strings.ToLower(key.Header().Name), ".")
	s.KeyTag = int(key.KeyTag())
	s.Flags = int(key.Flags)
	s.Algorithm = int(key.Algorithm)
	s.Fingerprint = hex.EncodeToString(sum[:])
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Describe names a submission for logs: zone and key tag, or the line.
func (s Submission) Describe() string {
	if s.Err != "" {
		line := strings.TrimSpace(s.Line)
		if len(line) > 60 {
			line = line[:60] + "..."
		}
		return fmt.Sprintf("input %q", line)
	}
	return fmt.Sprintf("zone %s key tag %d", s.Zone, s.KeyTag)
}
