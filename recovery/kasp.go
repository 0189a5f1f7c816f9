package recovery

import (
	"encoding/xml"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/internal/perm"
)

// DefaultPolicyFile is where OpenDNSSEC 2.1 reads kasp.xml when conf.xml
// names no <PolicyFile>.
const DefaultPolicyFile = "/etc/opendnssec/kasp.xml"

// DefaultMaxZoneTTL is assumed where kasp.xml gives no <MaxZoneTTL>.
const DefaultMaxZoneTTL = 24 * time.Hour

// Timing is what a key restore plan needs of a policy in kasp.xml, named as
// draft-ietf-dnsop-dnssec-keyrestore-01 and RFC 7583 name them.
type Timing struct {
	Policy string `json:"policy"`
	// TTLkey: <Keys><TTL>, the DNSKEY RRset's TTL.
	TTLkey time.Duration `json:"-"`
	// Dprp: <Zone><PropagationDelay>, the zone's own servers.
	Dprp time.Duration `json:"-"`
	// TTLsig: <Signatures><MaxZoneTTL>, the longest TTL of a signed RRset.
	TTLsig time.Duration `json:"-"`
	// Dsgn: <Signatures><Resign>: the signer re-signs the zone this often,
	// so a new key signs everything within it.
	Dsgn time.Duration `json:"-"`
	// DprpP, TTLds, Dreg: <Parent><PropagationDelay>, <Parent><DS><TTL>,
	// <Parent><RegistrationDelay> (0 when absent).
	DprpP time.Duration `json:"-"`
	TTLds time.Duration `json:"-"`
	Dreg  time.Duration `json:"-"`
	// Assumed lists what kasp.xml does not say and the plan assumes.
	Assumed []string `json:"assumed"`
}

// Seconds is the timing in seconds, for the JSON document.
func (t Timing) Seconds() map[string]int64 {
	return map[string]int64{"TTLkey": secs(t.TTLkey), "Dprp": secs(t.Dprp), "TTLsig": secs(t.TTLsig), "Dsgn": secs(t.Dsgn),
		"DprpP": secs(t.DprpP), "TTLds": secs(t.TTLds), "Dreg": secs(t.Dreg)}
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }

type xmlKasp struct {
	Policies []struct {
		Name       string `xml:"name,attr"`
		Signatures struct {
			Resign     string `xml:"Resign"`
			MaxZoneTTL string `xml:"MaxZoneTTL"`
		} `xml:"Signatures"`
		Keys struct {
			TTL string `xml:"TTL"`
		} `xml:"Keys"`
		Zone struct {
			PropagationDelay string `xml:"PropagationDelay"`
		} `xml:"Zone"`
		Parent struct {
			PropagationDelay  string `xml:"PropagationDelay"`
			DSTTL             string `xml:"DS>TTL"`
			RegistrationDelay string `xml:"RegistrationDelay"`
		} `xml:"Parent"`
	} `xml:"Policy"`
}

// PolicyFile reads conf.xml's <Common><PolicyFile>.
func PolicyFile(conf string) (string, error) {
	data, err := os.ReadFile(conf)
	if err != nil {
		return "", fmt.Errorf("opendnssec_conf: %w", perm.Explain(conf, err))
	}
	var x struct {
		PolicyFile string `xml:"Common>PolicyFile"`
	}
	if err := xml.Unmarshal(data, &x); err != nil {
		return "", fmt.Errorf("%s: not well-formed XML (xmllint --noout %s shows where)", conf, conf)
	}
	if p := strings.TrimSpace(x.PolicyFile); p != "" {
		return p, nil
	}
	return DefaultPolicyFile, nil
}

// ReadKasp reads the timing of every policy in kasp.xml.
func ReadKasp(path string) (map[string]Timing, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kasp.xml: %w", perm.Explain(path, err))
	}
	var x xmlKasp
	if err := xml.Unmarshal(data, &x); err != nil {
		return nil, fmt.Errorf("%s: not a kasp.xml (xmllint --noout %s shows where)", path, path)
	}
	out := map[string]Timing{}
	for _, p := range x.Policies {
		t := Timing{Policy: p.Name, Assumed: []string{}}
		for _, f := range []struct {
			into     *time.Duration
			text     string
			element  string
			optional bool
			def      time.Duration
		}{
			{&t.TTLkey, p.Keys.TTL, "Keys/TTL", false, 0},
			{&t.Dprp, p.Zone.PropagationDelay, "Zone/PropagationDelay", false, 0},
			{&t.TTLsig, p.Signatures.MaxZoneTTL, "Signatures/MaxZoneTTL", true, DefaultMaxZoneTTL},
			{&t.Dsgn, p.Signatures.Resign, "Signatures/Resign", false, 0},
			{&t.DprpP, p.Parent.PropagationDelay, "Parent/PropagationDelay", false, 0},
			{&t.TTLds, p.Parent.DSTTL, "Parent/DS/TTL", false, 0},
			{&t.Dreg, p.Parent.RegistrationDelay, "Parent/RegistrationDelay", true, 0},
		} {
			s := strings.TrimSpace(f.text)
			if s == "" {
				if !f.optional {
					return nil, fmt.Errorf("%s: policy %q has no <%s>", path, p.Name, f.element)
				}
				*f.into = f.def
				t.Assumed = append(t.Assumed, fmt.Sprintf("no <%s> in kasp.xml: %s assumed", f.element, human.Duration(f.def)))
				continue
			}
			d, err := human.ParseISODuration(s)
			if err != nil {
				return nil, fmt.Errorf("%s: policy %q <%s>: %w", path, p.Name, f.element, err)
			}
			*f.into = d
		}
		out[p.Name] = t
	}
	return out, nil
}
