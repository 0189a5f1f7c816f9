package zonereview

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// verifier is one apex DNSKEY, parsed once.
type verifier struct {
	tag       uint16
	alg       uint8
	supported bool
	why       string // why not supported
	rsa       *rsa.PublicKey
	ecdsa     *ecdsa.PublicKey
	ed25519   ed25519.PublicKey
}

// keySet is the apex DNSKEY RRset, read-only once built.
type keySet struct {
	keys []verifier
	// byTagAlg maps tag<<8|alg to the indexes of the keys with it (a key
	// tag can collide).
	byTagAlg map[uint32][]int
}

func newKeySet(dnskeys []*dns.DNSKEY) *keySet {
	ks := &keySet{byTagAlg: map[uint32][]int{}}
	for i, k := range dnskeys {
		v := parseKey(k)
		ks.keys = append(ks.keys, v)
		id := uint32(v.tag)<<8 | uint32(v.alg)
		ks.byTagAlg[id] = append(ks.byTagAlg[id], i)
	}
	return ks
}

// hashFor is the digest of a signature algorithm; 0 for Ed25519, which
// signs the data itself.
func hashFor(alg uint8) (crypto.Hash, bool) {
	switch alg {
	case dns.RSASHA1, dns.RSASHA1NSEC3SHA1:
		return crypto.SHA1, true
	case dns.RSASHA256, dns.ECDSAP256SHA256:
		return crypto.SHA256, true
	case dns.RSASHA512:
		return crypto.SHA512, true
	case dns.ECDSAP384SHA384:
		return crypto.SHA384, true
	case dns.ED25519:
		return 0, true
	}
	return 0, false
}

func parseKey(k *dns.DNSKEY) verifier {
	v := verifier{tag: k.KeyTag(), alg: k.Algorithm}
	if k.Protocol != 3 {
		v.why = fmt.Sprintf("protocol %d, not 3", k.Protocol)
		return v
	}
	if _, ok := hashFor(k.Algorithm); !ok {
		v.why = fmt.Sprintf("algorithm %d (%s) is not supported", k.Algorithm, algString(k.Algorithm))
		return v
	}
	raw, err := base64.StdEncoding.DecodeString(k.PublicKey)
	if err != nil {
		v.why = "public key is not base64"
		return v
	}
	switch k.Algorithm {
	case dns.RSASHA1, dns.RSASHA1NSEC3SHA1, dns.RSASHA256, dns.RSASHA512:
		// RFC 3110 section 2: exponent length, exponent, modulus.
		if len(raw) < 3 {
			v.why = "RSA public key too short"
			return v
		}
		elen, off := int(raw[0]), 1
		if elen == 0 {
			elen, off = int(binary.BigEndian.Uint16(raw[1:3])), 3
		}
		if elen == 0 || elen > 4 || off+elen >= len(raw) {
			v.why = "RSA exponent unsupported or key malformed"
			return v
		}
		var e int
		for _, b := range raw[off : off+elen] {
			e = e<<8 | int(b)
		}
		n := new(big.Int).SetBytes(raw[off+elen:])
		if n.BitLen() < 1024 || n.BitLen() > 4096 {
			v.why = fmt.Sprintf("RSA modulus of %d bits, outside 1024 to 4096", n.BitLen())
			return v
		}
		if e < 3 || e&1 == 0 {
			v.why = "RSA exponent invalid"
			return v
		}
		v.rsa = &rsa.PublicKey{N: n, E: e}
	case dns.ECDSAP256SHA256, dns.ECDSAP384SHA384:
		curve, size := elliptic.P256(), 64
		if k.Algorithm == dns.ECDSAP384SHA384 {
			curve, size = elliptic.P384(), 96
		}
		if len(raw) != size {
			v.why = fmt.Sprintf("ECDSA public key of %d bytes, not %d", len(raw), size)
			return v
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append([]byte{4}, raw...))
		if err != nil {
			v.why = "ECDSA public key not on the curve"
			return v
		}
		v.ecdsa = pub
	case dns.ED25519:
		if len(raw) != ed25519.PublicKeySize {
			v.why = fmt.Sprintf("Ed25519 public key of %d bytes, not 32", len(raw))
			return v
		}
		v.ed25519 = ed25519.PublicKey(raw)
	}
	v.supported = true
	return v
}

func algString(a uint8) string {
	if s, ok := dns.AlgorithmToString[a]; ok {
		return s
	}
	return fmt.Sprintf("ALG%d", a)
}

// check verifies a signature over data with v; scratch holds the digest.
func (v *verifier) check(h hash.Hash, data, sig []byte, scratch *[64]byte) bool {
	var digest []byte
	if h != nil {
		h.Reset()
		h.Write(data)
		digest = h.Sum(scratch[:0])
	}
	switch {
	case v.rsa != nil:
		hid, _ := hashFor(v.alg)
		return rsa.VerifyPKCS1v15(v.rsa, hid, digest, sig) == nil
	case v.ecdsa != nil:
		if len(sig) != 2*((v.ecdsa.Curve.Params().BitSize+7)/8) {
			return false
		}
		half := len(sig) / 2
		r, s := new(big.Int).SetBytes(sig[:half]), new(big.Int).SetBytes(sig[half:])
		return ecdsa.Verify(v.ecdsa, digest, r, s)
	case v.ed25519 != nil:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(v.ed25519, data, sig)
	}
	return false
}

// hashers keeps one hash of each kind for a worker.
type hashers struct {
	sha1, sha256, sha384, sha512 hash.Hash
}

func newHashers() *hashers {
	return &hashers{sha1.New(), sha256.New(), sha512.New384(), sha512.New()}
}

func (hs *hashers) forAlg(alg uint8) hash.Hash {
	h, _ := hashFor(alg)
	switch h {
	case crypto.SHA1:
		return hs.sha1
	case crypto.SHA256:
		return hs.sha256
	case crypto.SHA384:
		return hs.sha384
	case crypto.SHA512:
		return hs.sha512
	}
	return nil
}

// canonicalRRset is an RRset's records in canonical form (RFC 4034 section
// 6.2) without owner and TTL, which depend on the RRSIG: each entry is the
// RDLENGTH and RDATA, sorted by RDATA and without duplicates.
type canonicalRRset struct {
	typ, class uint16
	rdata      [][]byte
}

// rdataLowered lists the types whose RDATA names are lower-cased in the
// canonical form: RFC 4034 section 6.2 as RFC 6840 section 5.1 corrects it.
func canonicalRR(rr dns.RR) dns.RR {
	low := func(s string) string {
		if strings.IndexByte(s, '\\') < 0 {
			return strings.ToLower(s)
		}
		w, err := wireName(s)
		if err != nil {
			return s
		}
		return presentation(w)
	}
	switch x := rr.(type) {
	case *dns.NS:
		c := *x
		c.Ns = low(c.Ns)
		return &c
	case *dns.MD:
		c := *x
		c.Md = low(c.Md)
		return &c
	case *dns.MF:
		c := *x
		c.Mf = low(c.Mf)
		return &c
	case *dns.CNAME:
		c := *x
		c.Target = low(c.Target)
		return &c
	case *dns.SOA:
		c := *x
		c.Ns, c.Mbox = low(c.Ns), low(c.Mbox)
		return &c
	case *dns.MB:
		c := *x
		c.Mb = low(c.Mb)
		return &c
	case *dns.MG:
		c := *x
		c.Mg = low(c.Mg)
		return &c
	case *dns.MR:
		c := *x
		c.Mr = low(c.Mr)
		return &c
	case *dns.PTR:
		c := *x
		c.Ptr = low(c.Ptr)
		return &c
	case *dns.MINFO:
		c := *x
		c.Rmail, c.Email = low(c.Rmail), low(c.Email)
		return &c
	case *dns.MX:
		c := *x
		c.Mx = low(c.Mx)
		return &c
	case *dns.RP:
		c := *x
		c.Mbox, c.Txt = low(c.Mbox), low(c.Txt)
		return &c
	case *dns.AFSDB:
		c := *x
		c.Hostname = low(c.Hostname)
		return &c
	case *dns.RT:
		c := *x
		c.Host = low(c.Host)
		return &c
	case *dns.SIG:
		c := *x
		c.SignerName = low(c.SignerName)
		return &c
	case *dns.PX:
		c := *x
		c.Map822, c.Mapx400 = low(c.Map822), low(c.Mapx400)
		return &c
	case *dns.NAPTR:
		c := *x
		c.Replacement = low(c.Replacement)
		return &c
	case *dns.KX:
		c := *x
		c.Exchanger = low(c.Exchanger)
		return &c
	case *dns.SRV:
		c := *x
		c.Target = low(c.Target)
		return &c
	case *dns.DNAME:
		c := *x
		c.Target = low(c.Target)
		return &c
	}
	return rr
}

// makeCanonical packs rrs (one RRset) into canonical form, using buf as
// scratch space and arena for the RDATA kept.
func makeCanonical(rrs []dns.RR, buf []byte, arena []byte) (canonicalRRset, []byte, []byte, error) {
	c := canonicalRRset{typ: rrs[0].Header().Rrtype, class: rrs[0].Header().Class, rdata: make([][]byte, 0, len(rrs))}
	arena = arena[:0]
	var offs []int
	for _, rr := range rrs {
		need := dns.Len(rr) + 16
		if cap(buf) < need {
			buf = make([]byte, need*2)
		}
		buf = buf[:cap(buf)]
		n, err := dns.PackRR(canonicalRR(rr), buf, 0, nil, false)
		if err != nil {
			return c, buf, arena, fmt.Errorf("%s %s: %w", rr.Header().Name, typeString(c.typ), err)
		}
		// Skip the owner name, type, class and TTL.
		off := 0
		for off < n && buf[off] != 0 {
			off += int(buf[off]) + 1
		}
		off += 1 + 8
		if off+2 > n {
			return c, buf, arena, fmt.Errorf("%s %s: short record", rr.Header().Name, typeString(c.typ))
		}
		offs = append(offs, len(arena))
		arena = append(arena, buf[off:n]...)
	}
	offs = append(offs, len(arena))
	for i := 0; i+1 < len(offs); i++ {
		c.rdata = append(c.rdata, arena[offs[i]:offs[i+1]:offs[i+1]])
	}
	sort.Slice(c.rdata, func(i, j int) bool { return bytes.Compare(c.rdata[i][2:], c.rdata[j][2:]) < 0 })
	out := c.rdata[:1]
	for _, r := range c.rdata[1:] {
		if !bytes.Equal(r, out[len(out)-1]) {
			out = append(out, r)
		}
	}
	c.rdata = out
	return c, buf, arena, nil
}

// signedData appends to dst what sig signs (RFC 4034 section 3.1.8.1): the
// RRSIG RDATA without the signature, then the RRset in canonical form with
// owner (the wildcard form when sig.Labels is below the owner's count) and
// the original TTL.
func signedData(dst []byte, sig *dns.RRSIG, signer string, owner string, set *canonicalRRset) []byte {
	dst = binary.BigEndian.AppendUint16(dst, sig.TypeCovered)
	dst = append(dst, sig.Algorithm, sig.Labels)
	dst = binary.BigEndian.AppendUint32(dst, sig.OrigTtl)
	dst = binary.BigEndian.AppendUint32(dst, sig.Expiration)
	dst = binary.BigEndian.AppendUint32(dst, sig.Inception)
	dst = binary.BigEndian.AppendUint16(dst, sig.KeyTag)
	dst = append(dst, signer...)
	for _, rd := range set.rdata {
		dst = append(dst, owner...)
		dst = binary.BigEndian.AppendUint16(dst, set.typ)
		dst = binary.BigEndian.AppendUint16(dst, set.class)
		dst = binary.BigEndian.AppendUint32(dst, sig.OrigTtl)
		dst = append(dst, rd...)
	}
	return dst
}

// wildcardOwner is the owner a signature with the given label count covers:
// the owner itself, or "*" and its rightmost labels (RFC 4035 section 5.3.2).
func wildcardOwner(owner string, labels int) (string, bool) {
	var off [128]uint8
	n := labelOffsets(owner, &off)
	if labels >= n {
		return owner, labels == n
	}
	return "\x01*" + owner[off[n-labels]:], true
}

// absTime turns an RRSIG time (seconds, modulo 2^32) into the time nearest
// to now (RFC 4034 section 3.1.5, serial number arithmetic).
func absTime(t uint32, now time.Time) time.Time {
	n := now.Unix()
	return time.Unix(n+int64(int32(t-uint32(n))), 0).UTC()
}
