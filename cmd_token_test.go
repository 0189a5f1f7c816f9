package main

// Script commands about tokens: softhsm init and its kin (the other
// implementations' token command is in impl_test.go).

import (
	"flag"

	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// softhsm conf [-dir D]: only write D/softhsm2.conf
// softhsm init [-dir D] [-pin P] LABEL: make a token (in $WORK/softhsm by default)
// softhsm delete [-dir D] LABEL ID: delete the key pair whose CKA_ID is ID
// softhsm keygen [-dir D] [-type T] LABEL ID: make a key pair (EC P-256 by
// default, or pkcs11-tool's T such as RSA:2048) with CKA_ID and label ID
func cmdSoftHSM(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: softhsm conf|init|delete|keygen [-dir D] [-pin P] args...")
	}
	fs := flag.NewFlagSet("softhsm "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", "softhsm", "SoftHSM folder")
	pin := fs.String("pin", sandbox.PIN, "user PIN")
	keyType := fs.String("type", "EC:prime256v1", "key type for keygen")
	if err := fs.Parse(args[1:]); err != nil {
		ts.Fatalf("softhsm: %v", err)
	}
	rest := fs.Args()
	conf, err := sandbox.SoftHSM(ts.MkAbs(*dir))
	ts.Check(err)
	switch {
	case args[0] == "conf" && len(rest) == 0:
	case args[0] == "init" && len(rest) == 1:
		ts.Check(sandbox.InitToken(conf, rest[0], *pin))
	case args[0] == "delete" && len(rest) == 2:
		ts.Check(sandbox.PKCS11Tool(conf, rest[0], *pin, "--delete-object", "--type", "privkey", "--id", rest[1]))
		sandbox.PKCS11Tool(conf, rest[0], *pin, "--delete-object", "--type", "pubkey", "--id", rest[1])
	case args[0] == "keygen" && len(rest) == 2:
		ts.Check(sandbox.PKCS11Tool(conf, rest[0], *pin, "--keypairgen", "--key-type", *keyType,
			"--id", rest[1], "--label", rest[1], "--usage-sign"))
	default:
		ts.Fatalf("usage: softhsm conf|init|delete|keygen [-dir D] [-pin P] args...")
	}
}
