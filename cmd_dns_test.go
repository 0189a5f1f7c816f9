package main

// Script commands about DNS: the parent zone on BIND, forged DS records,
// DNSKEYs, and a server that never answers.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/rogpeppe/go-internal/testscript"
	_ "modernc.org/sqlite"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
	"github.com/ods-keyguard/ods-keyguard/ledger"
)

// parentSlot holds a script's parent name servers.
type parentSlot struct{ ps []*sandbox.Parent }

// parent start [-servers N] [-signed] ZONE CHILD...: sandboxed BIND 9 named
// servers (one unless -servers), each serving ZONE with CHILD delegated, on
// ports of their own, updatable from 127.0.0.1; sets $PARENT (ADDR:PORT)
// and $PARENT_PORT of the first, and $PARENT2, $PARENT2_PORT... of the
// others. -signed: BIND signs ZONE (all servers with one CSK) and re-signs
// it after every update; $PARENT_ANCHOR is a file holding its trust anchor
// (trust-anchors { "ZONE." static-key 257 3 13 "..."; };), for delv -a.
// -as NAME (one server): another server of the zone, not the parent that
// parent ds and validate read (a spoofing server, say): sets $NAME and
// $NAME_PORT.
// The servers are independent primaries: an update that reaches only one
// is a parent server that lags. Start them before the enforcer, whose
// hooks get $PARENT_PORT and $PARENT2_PORT.
// parent ds CHILD [N]: print CHILD's DS RRset as server N (default 1)
// serves it, one record a line, sorted; "no DS" when it has none.
func cmdParent(ts *testscript.TestScript, neg bool, args []string) {
	usage := "usage: parent start [-servers N] [-signed] [-as NAME] ZONE CHILD... | parent ds CHILD [N]"
	if neg || len(args) < 2 {
		ts.Fatalf("%s", usage)
	}
	slot := ts.Value("parent").(*parentSlot)
	switch args[0] {
	case "start":
		fs := flag.NewFlagSet("parent start", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		n := fs.Int("servers", 1, "")
		signed := fs.Bool("signed", false, "")
		as := fs.String("as", "PARENT", "")
		if fs.Parse(args[1:]) != nil || fs.NArg() < 1 || (*as != "PARENT" && *n != 1) {
			ts.Fatalf("%s", usage)
		}
		args = fs.Args()
		keys := ""
		for i := 1; i <= *n; i++ {
			dir, suffix := strings.ToLower(*as), ""
			if i > 1 {
				dir, suffix = dir+strconv.Itoa(i), strconv.Itoa(i)
			}
			p, err := sandbox.StartParent(sandbox.ParentOptions{Dir: ts.MkAbs(dir), Zone: args[0], Children: args[1:], Signed: *signed, Keys: keys})
			ts.Check(err)
			ts.Defer(p.Stop)
			ts.Setenv(*as+suffix, p.Addr())
			ts.Setenv(*as+suffix+"_PORT", strconv.Itoa(p.Port))
			if *as != "PARENT" {
				// Another server of the zone (a spoofing one): not the
				// parent that parent ds and validate read.
				continue
			}
			slot.ps = append(slot.ps, p)
			if *signed && i == 1 {
				// The others sign with the same key: one zone, one anchor.
				keys = filepath.Join(p.Dir, "keys")
				anchor := ts.MkAbs("parent-anchor.conf")
				ts.Check(p.AnchorFile(anchor))
				ts.Setenv("PARENT_ANCHOR", anchor)
			}
		}
	case "ds":
		i := 1
		if len(args) == 3 {
			var err error
			i, err = strconv.Atoi(args[2])
			ts.Check(err)
		}
		if i < 1 || i > len(slot.ps) {
			ts.Fatalf("parent ds: no parent server %d started", i)
		}
		ds, err := slot.ps[i-1].DS(args[1])
		ts.Check(err)
		sort.Strings(ds)
		if len(ds) == 0 {
			fmt.Fprintln(ts.Stdout(), "no DS")
		}
		for _, d := range ds {
			fmt.Fprintln(ts.Stdout(), d)
		}
	default:
		ts.Fatalf("%s", usage)
	}
}

// forgeds FILE KIND ACTION LINEFILE [LOCATOR]: write a DS spool file in the
// spool's own format (checksum and all) holding one event for the DNSKEY
// in LINEFILE: what someone who can write the spool could plant there.
func cmdForgeDS(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 4 || len(args) > 5 {
		ts.Fatalf("usage: forgeds FILE KIND ACTION LINEFILE [LOCATOR]")
	}
	line := strings.SplitN(ts.ReadFile(args[3]), "\n", 2)[0] + "\n"
	rr, err := dns.NewRR(strings.SplitN(line, ";", 2)[0])
	ts.Check(err)
	k, ok := rr.(*dns.DNSKEY)
	if !ok {
		ts.Fatalf("forgeds: %s holds no DNSKEY", args[3])
	}
	pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
	ts.Check(err)
	fp := sha256.Sum256(pub)
	ev := ledger.DSEvent{ID: "forged-" + filepath.Base(args[0]), Time: time.Now().UTC(), Kind: args[1], Action: args[2],
		Zone: strings.TrimSuffix(k.Hdr.Name, "."), KeyTag: int(k.KeyTag()), Algorithm: int(k.Algorithm),
		Fingerprint: hex.EncodeToString(fp[:]), Line: line, Reason: "its successor's DS is not at the parent yet", By: "hook"}
	if len(args) == 5 {
		ev.Locator = args[4]
	}
	data, err := json.Marshal([]ledger.DSEvent{ev})
	ts.Check(err)
	sum := sha256.Sum256(data)
	doc, err := json.Marshal(map[string]any{"format": "ods-keyguard/ds-spool/1", "sha256": hex.EncodeToString(sum[:]), "data": json.RawMessage(data)})
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), append(doc, '\n'), 0o640))
}

// gendnskeys N ZONE FILE: write N DNSKEY lines (flags 257, algorithm 13) of
// random public keys for ZONE, in the enforcer's form: keys the enforcer
// does not have, for a flood of requests.
func cmdGenDNSKEYs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: gendnskeys N ZONE FILE")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	var b strings.Builder
	pub := make([]byte, 64)
	for i := 0; i < n; i++ {
		_, err := rand.Read(pub)
		ts.Check(err)
		fmt.Fprintf(&b, "%s. 3600 IN DNSKEY 257 3 13 %s \n", args[1], base64.StdEncoding.EncodeToString(pub))
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[2]), []byte(b.String()), 0o644))
}

// blackhole: a TCP and UDP server on 127.0.0.1 that takes connections and
// queries and never answers (a DNS server that hangs), as a server stopped
// with SIGSTOP does (the kernel still accepts);
// $BLACKHOLE_PORT names its port. Closed at the end of the script.
func cmdBlackhole(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: blackhole")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	ts.Defer(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	// The same port over UDP: a DNS server that never answers takes
	// the query and says nothing.
	port := ln.Addr().(*net.TCPAddr).Port
	if u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, _, err := u.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
		ts.Defer(func() { u.Close() })
	} else {
		ts.Fatalf("blackhole: udp port %d: %v", port, err)
	}
	ts.Setenv("BLACKHOLE_PORT", strconv.Itoa(port))
}
