// Package inventory reconciles the enforcer's keys with what the tokens hold:
// which key is where, and what is missing, different or unknown.
package inventory

import (
	"fmt"
	"sort"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/internal/human"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

// Token is one token's identity and whether it could be read.
type Token struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Repository string `json:"repository"`
	Label      string `json:"label"`
	Serial     string `json:"serial,omitempty"`
	Model      string `json:"model,omitempty"`
	Reachable  bool   `json:"reachable"`
	Keys       int    `json:"key_count"`
	Error      string `json:"error,omitempty"`
}

// Row is one key known to the enforcer or found on a token.
type Row struct {
	Locator    string            `json:"locator"`
	Repository string            `json:"repository"`
	Policy     string            `json:"policy,omitempty"`
	Role       string            `json:"role,omitempty"`
	Zones      []string          `json:"zones"`
	Use        string            `json:"use"` // pool, assigned, in use, retiring, deleted, orphan
	Backup     string            `json:"backup,omitempty"`
	Present    map[string]string `json:"present"` // token name -> present, missing, unknown
	// Fingerprint is the SHA-256 of the DNSKEY public key, from the first
	// token that has it.
	Fingerprint string `json:"fingerprint,omitempty"`
	// CoveredBy is the newest confirmed ceremony that backed the key up.
	CoveredBy string `json:"covered_by,omitempty"`
	// BackedUp: rule 1 counts the key as backed up.
	BackedUp bool `json:"backed_up"`
	// KeyguardOnly: backed up by ods-keyguard's ceremony alone (RequireBackup,
	// but the enforcer has it Not Required and never moves it).
	KeyguardOnly bool          `json:"covered_by_keyguard_only"`
	Key          *enforcer.Key `json:"-"`
}

// Cover fills in which confirmed ceremony covers each key.
func (r *Report) Cover(cov ledger.Coverage, requireBackup map[string]bool) {
	for i := range r.Rows {
		row := &r.Rows[i]
		if c := cov.Covering(row.Repository, row.Locator); c != nil {
			row.CoveredBy = c.ID
		}
		row.BackedUp = rules.BackedUp(cov, requireBackup, row.Key)
		row.KeyguardOnly = rules.CoveredByKeyguardOnly(cov, requireBackup, row.Key)
	}
}

// Verdict is verify's first word: clean, problems, or unknown when a token
// could not be read.
func (r *Report) Verdict() string {
	switch {
	case r.Unreadable:
		return "unknown"
	case len(r.Problems) > 0:
		return "problems"
	}
	return "clean"
}

// Problem kinds.
const (
	Missing             = "missing"
	TypeMismatch        = "type-mismatch"
	FingerprintMismatch = "fingerprint-mismatch"
	Duplicate           = "duplicate"
)

// Problem is something verify reports as wrong.
type Problem struct {
	Kind    string `json:"kind"`
	Locator string `json:"locator"`
	Token   string `json:"token"`
	Detail  string `json:"detail"`
}

func (p Problem) String() string { return fmt.Sprintf("%s: key %s: %s", p.Token, p.Locator, p.Detail) }

// Orphan is a private key on a token that the enforcer does not know.
type Orphan struct {
	Token string `json:"token"`
	ID    string `json:"id"`
	Label string `json:"label"`
}

// Presence values in Row.Present.
const (
	Present = "present"
	Absent  = "missing"
	Unknown = "unknown"
)

// Report is the reconciliation of the enforcer's state with the tokens.
type Report struct {
	Tokens   []Token   `json:"tokens"`
	Rows     []Row     `json:"keys"`
	Problems []Problem `json:"problems"`
	Orphans  []Orphan  `json:"orphans"`
	// Notes say where tokens that must be two cannot be told apart, or
	// are one (hsmcheck.Resemblance): never decided on a serial alone.
	Notes []string `json:"notes"`
	// Unreadable is set when a token could not be read: the report is then
	// not the whole truth.
	Unreadable bool `json:"unreadable"`
}

// Build reconciles st with the token results, limited to repo when not "".
func Build(st *enforcer.State, results []hsmcheck.Result, repo string) *Report {
	r := &Report{Problems: []Problem{}, Orphans: []Orphan{}, Rows: []Row{}, Notes: []string{}}
	byRepo := map[string][]hsmcheck.Result{}
	for _, res := range results {
		t := res.Token
		if repo != "" && t.Repository != repo {
			continue
		}
		tok := Token{Name: t.Name, Kind: t.Kind, Repository: t.Repository, Label: t.Label}
		if res.Err != nil {
			tok.Error = res.Err.Error()
			r.Unreadable = true
		} else {
			tok.Reachable = true
			tok.Serial, tok.Model, tok.Keys = res.Contents.Serial, res.Contents.Model, len(res.Contents.Keys)
		}
		r.Tokens = append(r.Tokens, tok)
		byRepo[t.Repository] = append(byRepo[t.Repository], res)
	}
	known := map[string]map[string]bool{} // repository -> locator
	for _, k := range st.Keys {
		if repo != "" && k.Repository != repo {
			continue
		}
		if known[k.Repository] == nil {
			known[k.Repository] = map[string]bool{}
		}
		known[k.Repository][k.Locator] = true
		row := Row{
			Locator: k.Locator, Repository: k.Repository, Policy: k.PolicyName(),
			Role: k.Role.String(), Zones: k.Zones(), Use: k.Usage(),
			Backup: k.Backup.String(), Present: map[string]string{}, Key: k,
		}
		if row.Zones == nil {
			row.Zones = []string{}
		}
		r.check(k, &row, byRepo[k.Repository])
		r.Rows = append(r.Rows, row)
	}
	for _, res := range results {
		if res.Err != nil || (repo != "" && res.Token.Repository != repo) {
			continue
		}
		seen := map[string]bool{}
		for _, key := range res.Contents.Keys {
			if known[res.Token.Repository][key.ID] || seen[key.ID] {
				continue
			}
			seen[key.ID] = true
			r.Orphans = append(r.Orphans, Orphan{Token: res.Token.Name, ID: key.ID, Label: key.Label})
		}
	}
	for _, rs := range byRepo {
		for i := range rs {
			for j := i + 1; j < len(rs); j++ {
				if note := hsmcheck.Resemblance(rs[i], rs[j]); note != "" {
					r.Notes = append(r.Notes, note)
				}
			}
		}
	}
	sort.Strings(r.Notes)
	sort.SliceStable(r.Rows, func(i, j int) bool {
		if r.Rows[i].Repository != r.Rows[j].Repository {
			return r.Rows[i].Repository < r.Rows[j].Repository
		}
		return r.Rows[i].Key.ID < r.Rows[j].Key.ID
	})
	return r
}

// check fills row.Present and records the key's problems on its tokens.
func (r *Report) check(k *enforcer.Key, row *Row, tokens []hsmcheck.Result) {
	wantType, wantCurve := enforcer.AlgorithmKey(k.Algorithm)
	var firstFP, firstFPToken string
	for _, res := range tokens {
		name := res.Token.Name
		if res.Err != nil {
			row.Present[name] = Unknown
			continue
		}
		key, n := res.Contents.Find(k.Locator)
		if n == 0 {
			row.Present[name] = Absent
			if k.State != enforcer.Delete {
				r.Problems = append(r.Problems, Problem{Kind: Missing, Locator: k.Locator, Token: name,
					Detail: fmt.Sprintf("%s %s (backup %s) is not on %s",
						k.Role, describeUse(k), k.Backup, res.Token.Describe())})
			}
			continue
		}
		row.Present[name] = Present
		if k.State == enforcer.Delete {
			continue
		}
		if n > 1 {
			r.Problems = append(r.Problems, Problem{Kind: Duplicate, Locator: k.Locator, Token: name,
				Detail: fmt.Sprintf("%s carry this CKA_ID: which one signs is chance", human.Count(n, "private key"))})
		}
		if msg := mismatch(k, key, wantType, wantCurve); msg != "" {
			r.Problems = append(r.Problems, Problem{Kind: TypeMismatch, Locator: k.Locator, Token: name, Detail: msg})
		}
		if key.Fingerprint == "" {
			continue
		}
		if firstFP == "" {
			firstFP, firstFPToken = key.Fingerprint, name
			row.Fingerprint = key.Fingerprint
		} else if key.Fingerprint != firstFP {
			r.Problems = append(r.Problems, Problem{Kind: FingerprintMismatch, Locator: k.Locator, Token: name,
				Detail: fmt.Sprintf("public key %.16s differs from %.16s on %q: not the same key", key.Fingerprint, firstFP, firstFPToken)})
		}
	}
}

func describeUse(k *enforcer.Key) string {
	zones := k.Zones()
	switch {
	case k.Usage() == enforcer.UsePool:
		return "in the pool"
	case len(zones) == 1:
		return fmt.Sprintf("%s by %s", k.Usage(), zones[0])
	default:
		return fmt.Sprintf("%s by %s", k.Usage(), human.Count(len(zones), "zone"))
	}
}

func mismatch(k *enforcer.Key, key hsmcheck.Key, wantType, wantCurve string) string {
	if wantType == "" {
		return ""
	}
	got := key.Type
	if key.Curve != "" {
		got += " " + key.Curve
	} else if key.Bits > 0 {
		got += fmt.Sprintf(" %d bits", key.Bits)
	}
	want := wantType
	switch {
	case wantCurve != "":
		want += " " + wantCurve
	case k.Bits > 0:
		want += fmt.Sprintf(" %d bits", k.Bits)
	}
	if key.Type != wantType || (wantCurve != "" && key.Curve != wantCurve) ||
		(wantCurve == "" && wantType == "RSA" && k.Bits > 0 && key.Bits != k.Bits) {
		return fmt.Sprintf("token holds %s, enforcer expects %s (algorithm %d)", got, want, k.Algorithm)
	}
	return ""
}
