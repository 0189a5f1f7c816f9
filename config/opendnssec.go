package config

import (
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ods-keyguard/ods-keyguard/enforcer"
	"github.com/ods-keyguard/ods-keyguard/internal/perm"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

// DefaultSocket is where OpenDNSSEC 2.1 puts the enforcer's socket when
// conf.xml names none.
const DefaultSocket = "/run/opendnssec/enforcer.sock"

// DefaultPidFile is where it writes the daemon's pid when conf.xml names
// no <PidFile>.
const DefaultPidFile = "/run/opendnssec/enforcerd.pid"

// DefaultConf is the conf.xml an ods-enforcerd started without -c reads.
const DefaultConf = "/etc/opendnssec/conf.xml"

// OpenDNSSEC is what ods-keyguard takes from the enforcer's conf.xml.
type OpenDNSSEC struct {
	Path         string
	Repositories []Repository
	Datastore    enforcer.Datastore
	SocketFile   string
	// PidFile is <Enforcer><PidFile>: where the running daemon writes its pid.
	PidFile string
	// SyslogFacility is <Common><Logging><Syslog><Facility>, lower case
	// ("daemon" when conf.xml names none): ods-keyguard logs where the
	// OpenDNSSEC daemons do.
	SyslogFacility string
}

// Repository is one <Repository> of conf.xml.
type Repository struct {
	Name          string
	Module        string
	TokenLabel    string
	PIN           secret.Value
	RequireBackup bool
	SkipPublicKey bool
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
	Facility string `xml:"Common>Logging>Syslog>Facility"`
	Enforcer struct {
		Datastore struct {
			SQLite *string `xml:"SQLite"`
			MySQL  *struct {
				Host struct {
					Name string `xml:",chardata"`
					Port string `xml:"Port,attr"`
				} `xml:"Host"`
				Database string `xml:"Database"`
				Username string `xml:"Username"`
				Password string `xml:"Password"`
			} `xml:"MySQL"`
		} `xml:"Datastore"`
		SocketFile string `xml:"SocketFile"`
		PidFile    string `xml:"PidFile"`
	} `xml:"Enforcer"`
}

// LoadOpenDNSSEC reads the enforcer's conf.xml.
func LoadOpenDNSSEC(path string) (*OpenDNSSEC, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("opendnssec_conf: %w", perm.Explain(path, err))
	}
	var x xmlConf
	if err := xml.Unmarshal(data, &x); err != nil {
		return nil, xmlError(path, err)
	}
	o := &OpenDNSSEC{
		Path:           path,
		SocketFile:     strings.TrimSpace(x.Enforcer.SocketFile),
		PidFile:        strings.TrimSpace(x.Enforcer.PidFile),
		SyslogFacility: strings.ToLower(strings.TrimSpace(x.Facility)),
	}
	if o.SocketFile == "" {
		o.SocketFile = DefaultSocket
	}
	if o.PidFile == "" {
		o.PidFile = DefaultPidFile
	}
	if o.SyslogFacility == "" {
		o.SyslogFacility = "daemon"
	}
	switch ds := x.Enforcer.Datastore; {
	case ds.SQLite != nil:
		o.Datastore.SQLite = strings.TrimSpace(*ds.SQLite)
	case ds.MySQL != nil:
		m := &enforcer.MySQL{
			Host:     strings.TrimSpace(ds.MySQL.Host.Name),
			Database: strings.TrimSpace(ds.MySQL.Database),
			Username: strings.TrimSpace(ds.MySQL.Username),
			Password: secret.Value(ds.MySQL.Password),
		}
		if p := strings.TrimSpace(ds.MySQL.Host.Port); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n <= 0 || n > 65535 {
				return nil, fmt.Errorf("%s: <MySQL><Host Port=%q>: not a port number", path, p)
			}
			m.Port = n
		}
		if m.Host == "" || m.Database == "" || m.Username == "" {
			return nil, fmt.Errorf("%s: <Datastore><MySQL> needs <Host>, <Database> and <Username>", path)
		}
		o.Datastore.MySQL = m
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
		// OpenDNSSEC takes <Module>, <TokenLabel> and <PIN> as written:
		// white space around them is part of the path it loads, the label
		// it looks for, the PIN it sends. Trimmed here, ods-keyguard would
		// read a token the enforcer cannot use, and say OK.
		for _, f := range []struct{ elem, text, effect string }{
			{"Module", r.Module, "the enforcer cannot load that module"},
			{"TokenLabel", r.TokenLabel, "the enforcer finds no token so named"},
			{"PIN", r.PIN, "the token refuses the enforcer"},
		} {
			if strings.TrimSpace(f.text) != f.text {
				what := "it"
				if f.elem == "PIN" {
					what = "the PIN"
				}
				return nil, fmt.Errorf("%s: repository %q: <%s> has white space around it, which OpenDNSSEC keeps as part of %s (%s): write it on one line with nothing around it",
					path, name, f.elem, what, f.effect)
			}
		}
		o.Repositories = append(o.Repositories, Repository{
			Name:          name,
			Module:        r.Module,
			TokenLabel:    r.TokenLabel,
			PIN:           secret.Value(r.PIN),
			RequireBackup: r.RequireBackup != nil,
			SkipPublicKey: r.SkipPublicKey != nil,
		})
	}
	if len(o.Repositories) == 0 {
		return nil, fmt.Errorf("%s: no <Repository> in <RepositoryList>", path)
	}
	return o, nil
}

// xmlError reports a conf.xml that does not parse by line only: the XML
// parser's own message quotes the text it choked on, and in conf.xml that
// text can be a PIN or a password.
func xmlError(path string, err error) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: line %d: not well-formed XML (xmllint --noout %s shows where)", path, se.Line, path)
	}
	// Any other decoding error (a value of the wrong shape) may quote too.
	return fmt.Errorf("%s: not an OpenDNSSEC conf.xml (xmllint --noout %s shows where)", path, path)
}
