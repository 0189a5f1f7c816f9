package main

import "runtime/debug"

// buildVersion is the package's version, set at build time by make build
// and make deb (-ldflags -X main.buildVersion=...; packaging/version.sh):
// one version in the package, --version and check -V.
var buildVersion string

// version is the package's version, else the module version and the
// commit the binary was built from (go build by hand).
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v != "(devel)" && v != "" {
		return v // a pseudo-version carries the commit already
	}
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			v += " " + s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			v += "+dirty"
		}
	}
	return v
}
