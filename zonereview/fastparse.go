package zonereview

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// fastParser reads the records of a master file as miekg/dns's ZoneParser
// does, faster for what signers write: it frames records itself (blank
// owners, parentheses, comments) and builds the common types of a signed
// zone (A, AAAA, NS, DS, DNSKEY, RRSIG, NSEC, NSEC3) directly from their
// tokens. Any other type goes through a ZoneParser of its own, one record
// at a time. Anything it does not take exactly as ZoneParser would
// (directives, quotes, escapes, relative or odd names, TTLs with units,
// mnemonics where numbers are usual, a syntax error) hands the rest of the
// input to a ZoneParser, started in the same state (origin, owner, TTL,
// line number): so the records, and the errors, are ZoneParser's.
type fastParser struct {
	r      io.Reader
	origin string
	buf    []byte
	pos    int // next byte to read in buf
	eof    bool
	line   int // line number at pos
	toks   [][2]int
	owner  string // the previous owner
	ttl    uint32 // the previous TTL ...
	hasTTL bool   // ... when there is one
	zp     *dns.ZoneParser
	err    error
	skip   bool // the handed-off parser's first record is the state record
}

func newFastParser(r io.Reader, origin string) *fastParser {
	return &fastParser{r: r, origin: origin, buf: make([]byte, 0, 1<<20), line: 1}
}

func (p *fastParser) Err() error {
	if p.err != nil {
		return p.err
	}
	if p.zp != nil {
		return p.zp.Err()
	}
	return nil
}

// fill makes sure the buffer holds a whole logical record from pos (or
// the input's end), moving what is left to the front.
func (p *fastParser) fill() error {
	if p.pos > 0 {
		n := copy(p.buf, p.buf[p.pos:])
		p.buf = p.buf[:n]
		p.pos = 0
	}
	for !p.eof && len(p.buf) < cap(p.buf) {
		n, err := p.r.Read(p.buf[len(p.buf):cap(p.buf)])
		p.buf = p.buf[:len(p.buf)+n]
		if err == io.EOF {
			p.eof = true
		} else if err != nil {
			return err
		}
	}
	return nil
}

// handOff gives the rest of the input, from pos, to a ZoneParser in the
// state a ZoneParser would be in there.
func (p *fastParser) handOff() {
	var prefix strings.Builder
	if p.owner != "" && p.hasTTL {
		// A record that sets the owner and TTL to carry on with, skipped.
		fmt.Fprintf(&prefix, "%s %d IN TYPE65534 \\# 0\n", p.owner, p.ttl)
		p.skip = true
	}
	for i := strings.Count(prefix.String(), "\n") + 1; i < p.line; i++ {
		prefix.WriteByte('\n')
	}
	rest := append([]byte(nil), p.buf[p.pos:]...)
	p.zp = dns.NewZoneParser(io.MultiReader(strings.NewReader(prefix.String()), bytes.NewReader(rest), p.r), p.origin, "")
	p.buf = nil
}

func (p *fastParser) Next() (dns.RR, bool) {
	for {
		if p.zp != nil {
			rr, ok := p.zp.Next()
			if ok && p.skip {
				p.skip = false
				continue
			}
			return rr, ok
		}
		if p.err != nil {
			return nil, false
		}
		if p.pos+(64<<10) > len(p.buf) && !p.eof {
			if err := p.fill(); err != nil {
				p.err = err
				return nil, false
			}
		}
		rr, status := p.record()
		switch status {
		case recOK:
			return rr, true
		case recSkip:
			continue
		case recEOF:
			return nil, false
		case recHandOff:
			p.handOff()
		}
	}
}

const (
	recOK = iota
	recSkip
	recEOF
	recHandOff
)

// record reads one logical record at pos.
func (p *fastParser) record() (dns.RR, int) {
	b := p.buf
	i := p.pos
	if i >= len(b) {
		return nil, recEOF
	}
	// Frame the record: tokens up to the newline outside parentheses.
	toks := p.toks[:0]
	depth := 0
	lines := 0
	blankOwner := b[i] == ' ' || b[i] == '\t'
	j := i
	for {
		if j >= len(b) {
			if !p.eof || depth != 0 {
				// A record longer than the buffer, or unclosed.
				return nil, recHandOff
			}
			break
		}
		c := b[j]
		if c == '\n' {
			lines++
			j++
			if depth == 0 {
				break
			}
			continue
		}
		switch {
		case c == ' ' || c == '\t':
			j++
		case c == ';':
			for j < len(b) && b[j] != '\n' {
				j++
			}
		case c == '(' || c == ')':
			// ZoneParser reads a parenthesis against a token in its
			// own way: only free-standing ones are taken.
			if (j > i && !isSep(b[j-1])) || (j+1 < len(b) && !isSep(b[j+1]) && b[j+1] != ';') {
				return nil, recHandOff
			}
			if c == '(' {
				depth++
			} else if depth--; depth < 0 {
				return nil, recHandOff
			}
			j++
		case c == '"' || c == '\\' || c == '$' || c < ' ' || c >= 0x7f:
			return nil, recHandOff
		default:
			k := j
			for k < len(b) {
				c := b[k]
				if c == ' ' || c == '\t' || c == '\n' || c == ';' || c == '(' || c == ')' {
					break
				}
				if c == '"' || c == '\\' || c < ' ' || c >= 0x7f {
					return nil, recHandOff
				}
				k++
			}
			if len(toks) >= 4096 {
				return nil, recHandOff
			}
			toks = append(toks, [2]int{j, k})
			j = k
		}
	}
	p.toks = toks
	if len(toks) == 0 {
		p.pos, p.line = j, p.line+lines
		return nil, recSkip
	}
	t := 0
	owner := p.owner
	if !blankOwner {
		if toks[0][0] != i {
			return nil, recHandOff // a parenthesis at the start of the line
		}
		if s := b[toks[0][0]:toks[0][1]]; string(s) != owner {
			owner = string(s)
		}
		t = 1
		if !dns.IsFqdn(owner) {
			return nil, recHandOff
		}
		if _, ok := dns.IsDomainName(owner); !ok {
			return nil, recHandOff
		}
	} else if owner == "" {
		return nil, recHandOff
	}
	// [TTL] [IN] TYPE or IN TTL TYPE.
	ttl, hasTTL := p.ttl, p.hasTTL
	explicit, class := false, false
	typ := uint16(0)
	for n := 0; n < 3 && t < len(toks) && typ == 0; n++ {
		s := b[toks[t][0]:toks[t][1]]
		switch {
		case isDigits(s):
			if explicit {
				return nil, recHandOff
			}
			v, err := strconv.ParseUint(string(s), 10, 32)
			if err != nil {
				return nil, recHandOff
			}
			ttl, hasTTL, explicit = uint32(v), true, true
		case len(s) == 2 && (s[0]|0x20) == 'i' && (s[1]|0x20) == 'n':
			if class {
				return nil, recHandOff
			}
			class = true
		default:
			typ = fastType(s)
			if typ == 0 {
				return nil, recHandOff
			}
		}
		t++
	}
	if typ == 0 || !hasTTL {
		return nil, recHandOff
	}
	hdr := dns.RR_Header{Name: owner, Rrtype: typ, Class: dns.ClassINET, Ttl: ttl}
	rdata := toks[t:]
	if len(rdata) == 0 {
		return nil, recHandOff // ZoneParser's empty (update) records
	}
	rr := p.build(hdr, b, rdata)
	if rr == nil {
		return nil, recHandOff
	}
	p.owner, p.ttl, p.hasTTL = owner, ttl, true
	p.pos, p.line = j, p.line+lines
	return rr, recOK
}

func isSep(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '(' || c == ')'
}

func isDigits(s []byte) bool {
	if len(s) == 0 || len(s) > 10 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isTimestamp: YYYYMMDDHHmmSS, which no uint32 can be mistaken for.
func isTimestamp(s []byte) bool {
	if len(s) != 14 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// fastType knows the type tokens it takes; any other one, or a token that
// is also a class, is handed off.
func fastType(s []byte) uint16 {
	switch strings.ToUpper(string(s)) {
	case "A":
		return dns.TypeA
	case "AAAA":
		return dns.TypeAAAA
	case "NS":
		return dns.TypeNS
	case "DS":
		return dns.TypeDS
	case "DNSKEY":
		return dns.TypeDNSKEY
	case "RRSIG":
		return dns.TypeRRSIG
	case "NSEC":
		return dns.TypeNSEC
	case "NSEC3":
		return dns.TypeNSEC3
	case "SOA":
		return dns.TypeSOA
	case "NSEC3PARAM":
		return dns.TypeNSEC3PARAM
	case "CNAME":
		return dns.TypeCNAME
	case "MX":
		return dns.TypeMX
	}
	return 0
}

// build makes the record from its RDATA tokens, or returns nil for the
// caller to hand off.
func (p *fastParser) build(h dns.RR_Header, b []byte, rd [][2]int) dns.RR {
	tok := func(n int) string { return string(b[rd[n][0]:rd[n][1]]) }
	num := func(n int, bits int) (uint64, bool) {
		s := b[rd[n][0]:rd[n][1]]
		if !isDigits(s) {
			return 0, false
		}
		v, err := strconv.ParseUint(string(s), 10, bits)
		return v, err == nil
	}
	// rest joins tokens from n on, as ZoneParser's endingToString does.
	rest := func(n int) string {
		var sb strings.Builder
		for ; n < len(rd); n++ {
			sb.Write(b[rd[n][0]:rd[n][1]])
		}
		return sb.String()
	}
	name := func(n int) (string, bool) {
		s := tok(n)
		if !dns.IsFqdn(s) {
			return "", false
		}
		_, ok := dns.IsDomainName(s)
		return s, ok
	}
	types := func(n int) ([]uint16, bool) {
		out := make([]uint16, 0, len(rd)-n)
		for ; n < len(rd); n++ {
			s := strings.ToUpper(tok(n))
			t, ok := dns.StringToType[s]
			if !ok || strings.HasPrefix(s, "TYPE") {
				return nil, false
			}
			out = append(out, t)
		}
		return out, true
	}
	switch h.Rrtype {
	case dns.TypeA:
		if len(rd) != 1 {
			return nil
		}
		s := tok(0)
		ip := net.ParseIP(s)
		if ip == nil || strings.Contains(s, ":") {
			return nil
		}
		return &dns.A{Hdr: h, A: ip}
	case dns.TypeAAAA:
		if len(rd) != 1 {
			return nil
		}
		s := tok(0)
		ip := net.ParseIP(s)
		if ip == nil || !strings.Contains(s, ":") {
			return nil
		}
		return &dns.AAAA{Hdr: h, AAAA: ip}
	case dns.TypeNS:
		if len(rd) != 1 {
			return nil
		}
		n, ok := name(0)
		if !ok {
			return nil
		}
		return &dns.NS{Hdr: h, Ns: n}
	case dns.TypeDS:
		if len(rd) < 4 {
			return nil
		}
		tag, ok1 := num(0, 16)
		alg, ok2 := num(1, 8)
		dt, ok3 := num(2, 8)
		if !ok1 || !ok2 || !ok3 {
			return nil
		}
		return &dns.DS{Hdr: h, KeyTag: uint16(tag), Algorithm: uint8(alg), DigestType: uint8(dt), Digest: rest(3)}
	case dns.TypeDNSKEY:
		if len(rd) < 4 {
			return nil
		}
		flags, ok1 := num(0, 16)
		proto, ok2 := num(1, 8)
		alg, ok3 := num(2, 8)
		if !ok1 || !ok2 || !ok3 {
			return nil
		}
		return &dns.DNSKEY{Hdr: h, Flags: uint16(flags), Protocol: uint8(proto), Algorithm: uint8(alg), PublicKey: rest(3)}
	case dns.TypeRRSIG:
		if len(rd) < 9 {
			return nil
		}
		covered, ok := dns.StringToType[strings.ToUpper(tok(0))]
		if !ok || strings.HasPrefix(strings.ToUpper(tok(0)), "TYPE") {
			return nil
		}
		alg, ok1 := num(1, 8)
		labels, ok2 := num(2, 8)
		orig, ok3 := num(3, 32)
		if !ok1 || !ok2 || !ok3 || !isTimestamp(b[rd[4][0]:rd[4][1]]) || !isTimestamp(b[rd[5][0]:rd[5][1]]) {
			return nil
		}
		exp, err1 := dns.StringToTime(tok(4))
		inc, err2 := dns.StringToTime(tok(5))
		tag, ok4 := num(6, 16)
		signer, ok5 := name(7)
		if err1 != nil || err2 != nil || !ok4 || !ok5 {
			return nil
		}
		return &dns.RRSIG{Hdr: h, TypeCovered: covered, Algorithm: uint8(alg), Labels: uint8(labels), OrigTtl: uint32(orig),
			Expiration: exp, Inception: inc, KeyTag: uint16(tag), SignerName: signer, Signature: rest(8)}
	case dns.TypeNSEC:
		if len(rd) < 1 {
			return nil
		}
		next, ok := name(0)
		if !ok {
			return nil
		}
		ts, ok := types(1)
		if !ok {
			return nil
		}
		return &dns.NSEC{Hdr: h, NextDomain: next, TypeBitMap: ts}
	case dns.TypeNSEC3:
		if len(rd) < 5 {
			return nil
		}
		ha, ok1 := num(0, 8)
		fl, ok2 := num(1, 8)
		it, ok3 := num(2, 16)
		if !ok1 || !ok2 || !ok3 {
			return nil
		}
		x := &dns.NSEC3{Hdr: h, Hash: uint8(ha), Flags: uint8(fl), Iterations: uint16(it), HashLength: 20, NextDomain: tok(4)}
		if s := tok(3); s != "-" {
			x.SaltLength, x.Salt = uint8(len(s))/2, s
		}
		ts, ok := types(5)
		if !ok {
			return nil
		}
		x.TypeBitMap = ts
		return x
	}
	// Other types: through a ZoneParser of their own, on one line.
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %d IN %s", h.Name, h.Ttl, dns.TypeToString[h.Rrtype])
	for n := range rd {
		sb.WriteByte(' ')
		sb.Write(b[rd[n][0]:rd[n][1]])
	}
	// A sentinel record after it: ZoneParser reads a record that lacks
	// fields on into the next line, which only the whole stream can do.
	sb.WriteString("\n. 0 IN TYPE65534 \\# 0\n")
	zp := dns.NewZoneParser(strings.NewReader(sb.String()), p.origin, "")
	rr, ok := zp.Next()
	if !ok || zp.Err() != nil {
		return nil
	}
	if s, ok := zp.Next(); !ok || s.Header().Name != "." || s.Header().Rrtype != 65534 {
		return nil
	}
	if _, more := zp.Next(); more || zp.Err() != nil {
		return nil
	}
	return rr
}
