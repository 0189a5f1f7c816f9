package parent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// A DS is a key's only by key tag, algorithm and digest; without the public
// key, or with a digest type that cannot be computed, it is not known, and
// never a match.
func TestMatchByDigest(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &dns.DNSKEY{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	k.PublicKey = encodeEC(priv)
	pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ds := k.ToDS(dns.SHA256)
	right := DS{KeyTag: int(ds.KeyTag), Algorithm: int(ds.Algorithm), DigestType: int(ds.DigestType), Digest: strings.ToLower(ds.Digest)}
	wrong := right
	wrong.Digest = strings.Repeat("0", 64)
	unknown := right
	unknown.DigestType = 99
	for _, tt := range []struct {
		name        string
		ds          DS
		pub         []byte
		match, know bool
	}{
		{"right digest", right, pub, true, true},
		{"wrong digest, same tag", wrong, pub, false, true},
		{"no public key", right, nil, false, false},
		{"unknown digest type", unknown, pub, false, false},
		{"another key tag", DS{KeyTag: right.KeyTag + 1, Algorithm: 13, DigestType: 2, Digest: right.Digest}, pub, false, true},
	} {
		m, known := tt.ds.Match("example.com", right.KeyTag, 13, tt.pub)
		if m != tt.match || known != tt.know {
			t.Errorf("%s: match %v known %v, want %v %v", tt.name, m, known, tt.match, tt.know)
		}
	}
	// A public key of another key with the same tag claimed: not a match.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherPub, _ := base64.StdEncoding.DecodeString(encodeEC(other))
	if m, _ := right.Match("example.com", right.KeyTag, 13, otherPub); m {
		t.Errorf("another key's public key matched the DS")
	}
}

// encodeEC is an ECDSA P-256 public key in DNSKEY form: X and Y, 32 bytes
// each, base64.
func encodeEC(k *ecdsa.PrivateKey) string {
	b := make([]byte, 64)
	k.PublicKey.X.FillBytes(b[:32])
	k.PublicKey.Y.FillBytes(b[32:])
	return base64.StdEncoding.EncodeToString(b)
}
