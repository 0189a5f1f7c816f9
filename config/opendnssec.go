package config

import (
	"encoding/xml"
	"fmt"
	"os"
	"strings"
)

// DefaultSocket is where OpenDNSSEC 2.1 puts the enforcer's socket when
// conf.xml names none.
const DefaultSocket = "/run/opendnssec/enforcer.sock"

// OpenDNSSEC is what ods-keyguard takes from the enforcer's conf.xml.
type OpenDNSSEC struct {
	Path         string
	Repositories []Repository
	Datastore    Datastore
	SocketFile   string
	WorkingDir   string
	// DSSubmitCommand and DSRetractCommand are the enforcer's hooks as
	// written, including a trailing " --cka_id".
	DSSubmitCommand  string
	DSRetractCommand string
	// ManualKeyGeneration is set when the enforcer does not pre-generate keys.
	ManualKeyGeneration bool
	// KeyGenerationPeriod is <AutomaticKeyGenerationPeriod> as written (P1Y when absent).
	KeyGenerationPeriod string
}

// Repository is one <Repository> of conf.xml.
type Repository struct {
	Name          string
	Module        string
	TokenLabel    string
	PIN           Secret
	RequireBackup bool
	SkipPublicKey bool
}

// Datastore says where the enforcer keeps its database.
type Datastore struct {
	SQLite string
	// MySQL is set when the datastore is MySQL; ods-keyguard cannot read it yet.
	MySQL bool
}

// Repository returns the repository called name.
func (o *OpenDNSSEC) Repository(name string) (Repository, bool) {
	for _, r := range o.Repositories {
		if r.Name == name {
			return r, true
		}
	}
	return Repository{}, false
}

type xmlPresence struct{}

type xmlConf struct {
	Repositories []struct {
		Name          string       `xml:"name,attr"`
		Module        string       `xml:"Module"`
		TokenLabel    string       `xml:"TokenLabel"`
		PIN           string       `xml:"PIN"`
		RequireBackup *xmlPresence `xml:"RequireBackup"`
		SkipPublicKey *xmlPresence `xml:"SkipPublicKey"`
	} `xml:"RepositoryList>Repository"`
	Enforcer struct {
		Datastore struct {
			SQLite *string   `xml:"SQLite"`
			MySQL  *struct{} `xml:"MySQL"`
		} `xml:"Datastore"`
		SocketFile          string       `xml:"SocketFile"`
		WorkingDirectory    string       `xml:"WorkingDirectory"`
		DSSubmit            string       `xml:"DelegationSignerSubmitCommand"`
		DSRetract           string       `xml:"DelegationSignerRetractCommand"`
		ManualKeyGeneration *xmlPresence `xml:"ManualKeyGeneration"`
		KeyGenPeriod        string       `xml:"AutomaticKeyGenerationPeriod"`
	} `xml:"Enforcer"`
}

// LoadOpenDNSSEC reads the enforcer's conf.xml.
func LoadOpenDNSSEC(path string) (*OpenDNSSEC, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("opendnssec_conf: %w", err)
	}
	var x xmlConf
	if err := xml.Unmarshal(data, &x); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	o := &OpenDNSSEC{
		Path:                path,
		SocketFile:          strings.TrimSpace(x.Enforcer.SocketFile),
		WorkingDir:          strings.TrimSpace(x.Enforcer.WorkingDirectory),
		DSSubmitCommand:     strings.TrimSpace(x.Enforcer.DSSubmit),
		DSRetractCommand:    strings.TrimSpace(x.Enforcer.DSRetract),
		ManualKeyGeneration: x.Enforcer.ManualKeyGeneration != nil,
		KeyGenerationPeriod: strings.TrimSpace(x.Enforcer.KeyGenPeriod),
	}
	if o.SocketFile == "" {
		o.SocketFile = DefaultSocket
	}
	if o.KeyGenerationPeriod == "" {
		o.KeyGenerationPeriod = "P1Y"
	}
	switch {
	case x.Enforcer.Datastore.SQLite != nil:
		o.Datastore.SQLite = strings.TrimSpace(*x.Enforcer.Datastore.SQLite)
	case x.Enforcer.Datastore.MySQL != nil:
		o.Datastore.MySQL = true
	default:
		return nil, fmt.Errorf("%s: no <Datastore> in <Enforcer>", path)
	}
	seen := map[string]bool{}
	for _, r := range x.Repositories {
		name := strings.TrimSpace(r.Name)
		if name == "" {
			return nil, fmt.Errorf("%s: a <Repository> has no name", path)
		}
		if seen[name] {
			return nil, fmt.Errorf("%s: repository %q is defined twice", path, name)
		}
		seen[name] = true
		o.Repositories = append(o.Repositories, Repository{
			Name:          name,
			Module:        strings.TrimSpace(r.Module),
			TokenLabel:    strings.TrimSpace(r.TokenLabel),
			PIN:           Secret(strings.TrimSpace(r.PIN)),
			RequireBackup: r.RequireBackup != nil,
			SkipPublicKey: r.SkipPublicKey != nil,
		})
	}
	if len(o.Repositories) == 0 {
		return nil, fmt.Errorf("%s: no <Repository> in <RepositoryList>", path)
	}
	return o, nil
}
