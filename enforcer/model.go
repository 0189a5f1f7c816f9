package enforcer

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// enumName names a value of one of the enforcer database's numbered
// columns: names are given from first on; a number it does not know
// prints as what(N).
func enumName[T ~int](v, first T, what string, names ...string) string {
	if i := int(v - first); i >= 0 && i < len(names) {
		return names[i]
	}
	return fmt.Sprintf("%s(%d)", what, int(v))
}

// Role is a key's role: hsmKey.role and keyData.role.
type Role int

const (
	KSK Role = 1
	ZSK Role = 2
	CSK Role = 3
)

func (r Role) String() string {
	return enumName(r, KSK, "role", "KSK", "ZSK", "CSK")
}

// KeyState is hsmKey.state.
type KeyState int

const (
	Unused  KeyState = 1
	Private KeyState = 2
	Shared  KeyState = 3
	Delete  KeyState = 4
)

func (s KeyState) String() string {
	return enumName(s, Unused, "state", "UNUSED", "PRIVATE", "SHARED", "DELETE")
}

// BackupState is hsmKey.backup.
type BackupState int

const (
	BackupNotRequired BackupState = 0
	BackupRequired    BackupState = 1
	BackupPrepared    BackupState = 2
	BackupDone        BackupState = 3
)

func (b BackupState) String() string {
	return enumName(b, BackupNotRequired, "backup", "Not Required", "Required", "Prepared", "Done")
}

// RecordType is keyState.type.
type RecordType int

const (
	RecordDS          RecordType = 0
	RecordRRSIG       RecordType = 1
	RecordDNSKEY      RecordType = 2
	RecordRRSIGDNSKEY RecordType = 3
)

func (t RecordType) String() string {
	return enumName(t, RecordDS, "record", "DS", "RRSIG", "DNSKEY", "RRSIGDNSKEY")
}

// RecordState is keyState.state.
type RecordState int

const (
	Hidden      RecordState = 0
	Rumoured    RecordState = 1
	Omnipresent RecordState = 2
	Unretentive RecordState = 3
	NA          RecordState = 4
)

func (s RecordState) String() string {
	return enumName(s, Hidden, "state", "hidden", "rumoured", "omnipresent", "unretentive", "NA")
}

// DSState is keyData.dsAtParent.
type DSState int

const (
	DSUnsubmitted DSState = 0
	DSSubmit      DSState = 1
	DSSubmitted   DSState = 2
	DSSeen        DSState = 3
	DSRetract     DSState = 4
	DSRetracted   DSState = 5
)

func (s DSState) String() string {
	return enumName(s, DSUnsubmitted, "ds", "unsubmitted", "submit", "submitted", "seen", "retract", "retracted")
}

// Policy is a KASP policy with its keys.
type Policy struct {
	ID                      int64
	Name                    string
	KeysShared              bool
	ParentDSTTL             time.Duration
	ParentPropagationDelay  time.Duration
	ParentRegistrationDelay time.Duration
	KeyTTL                  time.Duration // the DNSKEY TTL (<Keys><TTL>)
	// SignaturesResign is how often the signer runs (<Signatures><Resign>);
	// SignaturesRefresh how long before expiry it renews a signature.
	SignaturesResign, SignaturesRefresh time.Duration
	Keys                                []PolicyKey
}

// PolicyKey is one <KSK>, <ZSK> or <CSK> of a policy.
type PolicyKey struct {
	Role           Role
	Algorithm      int
	Bits           int
	Lifetime       time.Duration
	Repository     string
	ManualRollover bool
}

// Zone is a zone and the keys assigned to it.
type Zone struct {
	ID         int64
	Name       string
	Policy     *Policy
	NextRoll   map[Role]time.Time
	OutputType string // the signer's output adapter: "File" and a path
	OutputURI  string
	Keys       []*Use
}

// Key is an hsmKey row with its uses by zones.
type Key struct {
	ID         int64
	Locator    string // lowercase hex CKA_ID
	Repository string
	Policy     *Policy
	Role       Role
	State      KeyState
	Backup     BackupState
	Algorithm  int
	Bits       int
	Inception  time.Time
	Uses       []*Use
}

// Use is a keyData row: a key assigned to a zone, with its record states.
type Use struct {
	Key        *Key
	Zone       *Zone
	Role       Role
	KeyTag     int
	DSAtParent DSState
	States     map[RecordType]RecordState
	// Changed is when each record's state last changed (keyState.lastChange).
	Changed map[RecordType]time.Time
}

// Live reports whether any of the use's records is rumoured or omnipresent:
// the key is published or signs, so rule 1 applies to it.
func (u *Use) Live() bool {
	for _, s := range u.States {
		if s == Rumoured || s == Omnipresent {
			return true
		}
	}
	return false
}

// PolicyName is the key's policy name, or "" for a key without one.
func (k *Key) PolicyName() string {
	if k.Policy == nil {
		return ""
	}
	return k.Policy.Name
}

// Live reports whether any zone publishes or signs with the key.
func (k *Key) Live() bool {
	for _, u := range k.Uses {
		if u.Live() {
			return true
		}
	}
	return false
}

// Use classes, as inventory shows them.
const (
	UsePool     = "pool"
	UseAssigned = "assigned"
	UseInUse    = "in use"
	UseRetiring = "retiring"
	UseDeleted  = "deleted"
)

// Usage tells what the enforcer does with the key: pool (UNUSED, waiting
// to be handed out), assigned (given to a zone, nothing published yet),
// in use (a record rumoured or omnipresent), retiring (its records on the
// way out), deleted (state DELETE).
func (k *Key) Usage() string {
	switch {
	case k.State == Delete:
		return UseDeleted
	case k.Live():
		return UseInUse
	case len(k.Uses) == 0:
		return UsePool
	}
	for _, u := range k.Uses {
		for _, s := range u.States {
			if s == Unretentive {
				return UseRetiring
			}
		}
	}
	return UseAssigned
}

// ZoneNames lists the names of the zones, in the database's order.
func (st *State) ZoneNames() []string {
	var out []string
	for _, z := range st.Zones {
		out = append(out, z.Name)
	}
	return out
}

// Zones lists the names of the zones the key is assigned to, sorted;
// empty, never nil, for a key in the pool.
func (k *Key) Zones() []string {
	out := []string{}
	for _, u := range k.Uses {
		out = append(out, u.Zone.Name)
	}
	sort.Strings(out)
	return out
}

// AlgorithmKey says what a DNSSEC algorithm number means on a token.
func AlgorithmKey(alg int) (typ, curve string) {
	switch alg {
	case 1, 5, 7, 8, 10:
		return "RSA", ""
	case 3, 6:
		return "DSA", ""
	case 13:
		return "EC", "P-256"
	case 14:
		return "EC", "P-384"
	case 15:
		return "EdDSA", "Ed25519"
	case 16:
		return "EdDSA", "Ed448"
	}
	return "", ""
}

// Zone returns the zone of that name (any case, with or without the final
// dot), or nil.
func (st *State) Zone(name string) *Zone {
	name = strings.TrimSuffix(name, ".")
	for _, z := range st.Zones {
		if strings.EqualFold(z.Name, name) {
			return z
		}
	}
	return nil
}
