package hsmcheck

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/lab/sandbox"
)

// The reader's suite runs twice: on the fake module and on a real SoftHSMv2
// token, both through Reader.Read, that is through the child process that
// gets its tokens and PINs on stdin, as ods-keyguard reads them.

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ChildCommand {
		open := OpenModule
		if os.Getenv("HSMCHECK_FAKE") != "" {
			open = fakeOpener
		}
		if err := ServeChild(os.Stdin, os.Stdout, open); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tokenDef is a token to make: its label, PIN and keys.
type tokenDef struct {
	label, pin string
	keys       []keySpec
}

// backend makes tokens that share one environment (one module, one child)
// and says which public key (DNSKEY form) each key has.
type backend interface {
	name() string
	module() string
	make(t *testing.T, defs ...tokenDef) ([]Token, map[string][]byte)
	// hung returns a token whose module never answers.
	hung(t *testing.T) Token
}

func reader(t *testing.T) Reader {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Reader{Exe: []string{self, ChildCommand}}
}

type fakeBackend struct{}

func (fakeBackend) name() string   { return "fake" }
func (fakeBackend) module() string { return "/fake.so" }

func (fakeBackend) make(t *testing.T, defs ...tokenDef) ([]Token, map[string][]byte) {
	var spec fakeSpec
	pubs := map[string][]byte{}
	for i, d := range defs {
		spec.Tokens = append(spec.Tokens, fakeToken{Label: d.label, PIN: d.pin, Serial: fmt.Sprintf("fake%04d", i), Keys: d.keys})
		for _, k := range d.keys {
			pubs[k.ID], _, _ = k.material()
		}
	}
	return tokensOf(spec, defs, "/fake.so"), pubs
}

func tokensOf(spec fakeSpec, defs []tokenDef, module string) []Token {
	b, _ := json.Marshal(spec)
	var out []Token
	for _, d := range defs {
		out = append(out, Token{Name: "R-" + d.label, Kind: KindRepository, Repository: "R", Module: module,
			Label: d.label, PIN: pinOf(d.pin), Env: map[string]string{"HSMCHECK_FAKE": string(b)}})
	}
	return out
}

func (f fakeBackend) hung(t *testing.T) Token {
	spec := fakeSpec{Tokens: []fakeToken{{Label: "dead", PIN: "1", Hang: true}}}
	return tokensOf(spec, []tokenDef{{label: "dead", pin: "1"}}, "/fake.so")[0]
}

const softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"

type softhsmBackend struct{}

func (softhsmBackend) name() string   { return "softhsm" }
func (softhsmBackend) module() string { return softhsmModule }

func (softhsmBackend) make(t *testing.T, defs ...tokenDef) ([]Token, map[string][]byte) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	must(t, os.MkdirAll(filepath.Join(dir, "tokens"), 0o700))
	must(t, os.WriteFile(conf, []byte("directories.tokendir = "+dir+"/tokens/\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600))
	env := map[string]string{"SOFTHSM2_CONF": conf}
	run := func(prog string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(prog, args...)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", prog, strings.Join(args, " "), err, out)
		}
		return out
	}
	pubs := map[string][]byte{}
	var out []Token
	for _, d := range defs {
		run("softhsm2-util", "--init-token", "--free", "--label", d.label, "--pin", d.pin, "--so-pin", "5678")
		tool := []string{"--module", softhsmModule, "--token-label", d.label, "--pin", d.pin}
		for _, k := range d.keys {
			kt := "EC:prime256v1"
			if k.Type == "RSA" {
				kt = fmt.Sprintf("rsa:%d", k.Bits)
			}
			run("pkcs11-tool", append(tool, "--keypairgen", "--key-type", kt, "--id", k.ID, "--label", k.ID, "--usage-sign")...)
			der := filepath.Join(dir, k.ID+".der")
			run("pkcs11-tool", append(tool, "--read-object", "--type", "pubkey", "--id", k.ID, "-o", der)...)
			pubs[k.ID] = dnskeyOf(t, der)
		}
		out = append(out, Token{Name: "R-" + d.label, Kind: KindRepository, Repository: "R", Module: softhsmModule,
			Label: d.label, PIN: pinOf(d.pin), Env: env})
	}
	return out, pubs
}

func (softhsmBackend) hung(t *testing.T) Token {
	fifo := filepath.Join(t.TempDir(), "softhsm2.conf")
	must(t, syscall.Mkfifo(fifo, 0o600))
	return Token{Name: "dead", Kind: KindMirror, Repository: "R", Module: softhsmModule, Label: "dead", PIN: "1",
		Env: map[string]string{"SOFTHSM2_CONF": fifo}}
}

// dnskeyOf reads a public key that pkcs11-tool wrote (DER
// SubjectPublicKeyInfo) into DNSKEY form, independently of the reader.
func dnskeyOf(t *testing.T, path string) []byte {
	t.Helper()
	der, err := os.ReadFile(path)
	must(t, err)
	key, err := x509.ParsePKIXPublicKey(der)
	must(t, err)
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		out := make([]byte, 64)
		k.X.FillBytes(out[:32])
		k.Y.FillBytes(out[32:])
		return out
	case *rsa.PublicKey:
		return rsaDNSKEY(k.N.Bytes(), big.NewInt(int64(k.E)).Bytes())
	}
	t.Fatalf("%s: a %T", path, key)
	return nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func backends(t *testing.T) []backend {
	out := []backend{fakeBackend{}}
	_, err1 := exec.LookPath("softhsm2-util")
	_, err2 := exec.LookPath("pkcs11-tool")
	_, err3 := os.Stat(softhsmModule)
	if err := errors.Join(err1, err2, err3); err != nil {
		if sandbox.Strict {
			t.Fatalf("SoftHSMv2 is needed, and CI does not skip: %v", err)
		}
		t.Logf("SoftHSMv2 missing, the suite runs on the fake module only: %v", err)
		return out
	}
	return append(out, softhsmBackend{})
}

const (
	ecID  = "aa01"
	rsaID = "bb02"
)

func TestSuite(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			t.Parallel()
			suite(t, b)
		})
	}
}

func suite(t *testing.T, b backend) {
	ctx := context.Background()
	r := reader(t)
	toks, pubs := b.make(t,
		tokenDef{label: "ods-a", pin: "1234", keys: []keySpec{{ID: ecID, Type: "EC"}, {ID: rsaID, Type: "RSA", Bits: 1024}}},
		tokenDef{label: "ods-dup", pin: "1234", keys: []keySpec{{ID: "cc03", Type: "EC"}, {ID: "cc03", Type: "EC"}}})
	good, dup := toks[0], toks[1]

	t.Run("every key with its public key", func(t *testing.T) {
		res := r.Read(ctx, []Token{good}, Request{})[0]
		must(t, res.Err)
		c := res.Contents
		if len(c.Keys) != 2 || c.Serial == "" || c.Label != "ods-a" || c.Name != good.Name {
			t.Fatalf("got %+v", c)
		}
		ec, n := c.Find(strings.ToUpper(ecID))
		if n != 1 || ec.Type != "EC" || ec.Curve != "P-256" || ec.Bits != 256 || ec.Label != "" {
			t.Errorf("EC key: %+v (%d)", ec, n)
		}
		rs, _ := c.Find(rsaID)
		if rs.Type != "RSA" || rs.Bits != 1024 {
			t.Errorf("RSA key: %+v", rs)
		}
		for _, k := range []Key{ec, rs} {
			if !bytes.Equal(k.PublicKey, pubs[k.ID]) || k.Fingerprint != FingerprintDNSKEY(pubs[k.ID]) {
				t.Errorf("key %s: public key %x, want %x", k.ID, k.PublicKey, pubs[k.ID])
			}
		}
	})
	t.Run("labels when asked", func(t *testing.T) {
		res := r.Read(ctx, []Token{good}, Request{Labels: true})[0]
		must(t, res.Err)
		for _, k := range res.Contents.Keys {
			if k.Label != k.ID {
				t.Errorf("key %s: label %q", k.ID, k.Label)
			}
		}
	})
	t.Run("only the keys asked for", func(t *testing.T) {
		res := r.Read(ctx, []Token{good, good}, Request{IDs: []string{strings.ToUpper(rsaID)}})
		for _, x := range res {
			must(t, x.Err)
			if len(x.Contents.Keys) != 1 || x.Contents.Keys[0].ID != rsaID {
				t.Fatalf("got %+v", x.Contents.Keys)
			}
		}
		res = r.Read(ctx, []Token{good}, Request{IDs: []string{}})
		if res[0].Err != nil || len(res[0].Contents.Keys) != 0 {
			t.Fatalf("no ids: %+v %v", res[0].Contents, res[0].Err)
		}
		res = r.Read(ctx, []Token{good}, Request{IDs: []string{"xyz"}})
		if res[0].Err == nil || res[0].Err.Error() != `repository "R-ods-a": CKA_ID "xyz" is not hex` {
			t.Fatalf("not hex: %v", res[0].Err)
		}
	})
	t.Run("without the public objects", func(t *testing.T) {
		res := r.Read(ctx, []Token{good}, Request{NoPublic: true})[0]
		must(t, res.Err)
		ec, _ := res.Contents.Find(ecID)
		rs, _ := res.Contents.Find(rsaID)
		if ec.Type != "EC" || ec.Fingerprint != "" || rs.Fingerprint != FingerprintDNSKEY(pubs[rsaID]) {
			t.Errorf("EC %+v, RSA %+v", ec, rs)
		}
	})
	t.Run("two keys under one CKA_ID", func(t *testing.T) {
		res := r.Read(ctx, []Token{dup}, Request{})[0]
		must(t, res.Err)
		if _, n := res.Contents.Find("cc03"); n != 2 {
			t.Errorf("found %d, want 2", n)
		}
	})
	t.Run("errors name the token, never the PIN", func(t *testing.T) {
		wrong, absent, nomod := good, good, good
		wrong.PIN = "9876"
		absent.Label = "nope"
		nomod.Module = ""
		res := r.Read(ctx, []Token{wrong, absent, nomod}, Request{})
		want := []string{
			`repository "R-ods-a": token "ods-a": login: CKR_PIN_INCORRECT`,
			`repository "R-ods-a": token "nope" not found in ` + b.module() + ` (tokens present: "ods-a", "ods-dup")`,
			`repository "R-ods-a": no PKCS#11 module configured`,
		}
		for i, x := range res {
			if x.Err == nil || x.Err.Error() != want[i] {
				t.Errorf("got %v, want %s", x.Err, want[i])
			}
			if x.Err != nil && strings.Contains(x.Err.Error(), "9876") {
				t.Error("the PIN reached an error message")
			}
		}
	})
	t.Run("a hung module is killed at the deadline", func(t *testing.T) {
		mark := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
		dead := b.hung(t)
		dead.Env["HSMCHECK_MARK"] = mark
		ctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
		defer cancel()
		start := time.Now()
		res := r.Read(ctx, []Token{good, dead}, Request{})
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("Read took %v", d)
		}
		must(t, res[0].Err)
		var te *TimeoutError
		if !errors.As(res[1].Err, &te) || !strings.HasSuffix(res[1].Err.Error(), `: token "dead" did not answer in 0.7 s`) {
			t.Fatalf("got %v", res[1].Err)
		}
		if pids := marked(mark); len(pids) > 0 {
			t.Fatalf("reader processes left running: %v", pids)
		}
	})
}

// marked lists the processes whose environment carries mark.
func marked(mark string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err == nil && bytes.Contains(env, []byte("HSMCHECK_MARK="+mark)) {
			out = append(out, filepath.Base(d))
		}
	}
	return out
}

// At the deadline a child is told to stop, not killed: a login that is
// writing (SoftHSMv2 rewrites token.object on C_Login) finishes its write,
// and the child exits before the next call. Killed in between, the token
// would be left empty.
func TestStopFinishesTheCallInProgress(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token.object")
	spec := fakeSpec{Tokens: []fakeToken{{Label: "slow", PIN: "1", Keys: []keySpec{{ID: ecID, Type: "EC"}},
		WriteFile: file, BeforeMS: 950, WriteMS: 120}}}
	toks := tokensOf(spec, []tokenDef{{label: "slow", pin: "1"}}, "/fake.so")
	// The write starts just before the deadline (1 s) and ends inside the
	// grace (a fifth of it).
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	res := reader(t).Read(ctx, toks, Request{})
	var te *TimeoutError
	if !errors.As(res[0].Err, &te) || !strings.HasSuffix(te.Error(), "did not answer in 1 s") {
		t.Fatalf("got %v", res[0].Err)
	}
	if b, _ := os.ReadFile(file); string(b) != "written" {
		t.Fatalf("the login's write was cut off: %q", b)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Read took %v: the child did not stop after the call", d)
	}
}

// Two tokens share a child: the one that answers keeps its answer when the
// other hangs.
func TestPartialAnswer(t *testing.T) {
	spec := fakeSpec{Tokens: []fakeToken{
		{Label: "ok", PIN: "1", Keys: []keySpec{{ID: ecID, Type: "EC"}}},
		{Label: "dead", PIN: "1", Hang: true},
	}}
	toks := tokensOf(spec, []tokenDef{{label: "ok", pin: "1"}, {label: "dead", pin: "1"}}, "/fake.so")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res := reader(t).Read(ctx, toks, Request{})
	if res[0].Err != nil || len(res[0].Contents.Keys) != 1 {
		t.Fatalf("the answering token: %+v %v", res[0].Contents, res[0].Err)
	}
	var te *TimeoutError
	if !errors.As(res[1].Err, &te) {
		t.Fatalf("the hung token: %v", res[1].Err)
	}
}
