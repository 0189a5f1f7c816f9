package inventory

import (
	"strings"
	"time"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/hsmcheck"
	"github.com/ods-keyguard/ods-keyguard/ledger"
	"github.com/ods-keyguard/ods-keyguard/rules"
)

// RepositoryConf is what status needs to know of a repository.
type RepositoryConf struct {
	Name          string
	RequireBackup bool
}

// BackupCounts counts keys by the enforcer's backup state.
type BackupCounts struct {
	NotRequired int `json:"not_required"`
	Required    int `json:"required"`
	Prepared    int `json:"prepared"`
	Done        int `json:"done"`
}

// TokenStatus is one token of a repository, as status shows it.
type TokenStatus struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Describe  string `json:"-"`
	Reachable bool   `json:"reachable"`
	Label     string `json:"label"`
	Serial    string `json:"serial,omitempty"`
	Keys      int    `json:"key_count"`
	Error     string `json:"error,omitempty"`
}

// RepositoryStatus is status's summary of one repository.
type RepositoryStatus struct {
	Name          string           `json:"name"`
	RequireBackup bool             `json:"require_backup"`
	Tokens        []TokenStatus    `json:"tokens"`
	Keys          int              `json:"key_count"`
	Backup        BackupCounts     `json:"backup"`
	KeyguardOnly  int              `json:"covered_by_keyguard_only"`
	LastConfirmed *ledger.Ceremony `json:"last_confirmed"`
	Open          *ledger.Ceremony `json:"open"`
	Unbacked      []rules.Unbacked `json:"unbacked_in_use"`
}

// Status summarises each repository: its tokens, its keys by backup state,
// its ceremonies, and its keys in use without a confirmed backup (rule 1,
// as rules.Evaluate judges it).
func Status(st *enforcer.State, results []hsmcheck.Result, store *ledger.Store, repos []RepositoryConf) []RepositoryStatus {
	rb := map[string]bool{}
	for _, r := range repos {
		rb[r.Name] = r.RequireBackup
	}
	res := rules.Evaluate(rules.Input{Now: time.Now().UTC(), State: st, Store: store, RequireBackup: rb})
	cov := store.Coverage()
	var out []RepositoryStatus
	for _, repo := range repos {
		rs := RepositoryStatus{Name: repo.Name, RequireBackup: repo.RequireBackup, Tokens: []TokenStatus{}, Unbacked: []rules.Unbacked{},
			LastConfirmed: store.LastConfirmed(repo.Name), Open: store.Open(repo.Name)}
		for _, r := range results {
			if r.Token.Repository != repo.Name || r.Token.Kind == hsmcheck.KindBackupToken {
				continue
			}
			t := TokenStatus{Name: r.Token.Name, Kind: r.Token.Kind, Describe: r.Token.Describe(), Label: r.Token.Label}
			if r.Err != nil {
				// Errors name the token; the line that shows this one does too.
				t.Error = strings.TrimPrefix(r.Err.Error(), t.Describe+": ")
			} else {
				t.Reachable, t.Label, t.Serial, t.Keys = true, r.Contents.Label, r.Contents.Serial, len(r.Contents.Keys)
			}
			rs.Tokens = append(rs.Tokens, t)
		}
		for _, k := range st.Keys {
			if k.Repository != repo.Name || k.State == enforcer.Delete {
				continue
			}
			rs.Keys++
			switch k.Backup {
			case enforcer.BackupNotRequired:
				rs.Backup.NotRequired++
			case enforcer.BackupRequired:
				rs.Backup.Required++
			case enforcer.BackupPrepared:
				rs.Backup.Prepared++
			case enforcer.BackupDone:
				rs.Backup.Done++
			}
			if rules.CoveredByKeyguardOnly(cov, rb, k) {
				rs.KeyguardOnly++
			}
		}
		for _, u := range res.Unbacked {
			if k := keyOf(st, u.Locator); k != nil && k.Repository == repo.Name {
				rs.Unbacked = append(rs.Unbacked, u)
			}
		}
		out = append(out, rs)
	}
	return out
}

func keyOf(st *enforcer.State, locator string) *enforcer.Key {
	for _, k := range st.Keys {
		if k.Locator == locator {
			return k
		}
	}
	return nil
}
