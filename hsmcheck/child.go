package hsmcheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ods-keyguard/ods-keyguard/internal/proc"
	"github.com/ods-keyguard/ods-keyguard/secret"
)

// ChildCommand is the hidden subcommand of the ods-keyguard binary that
// reads tokens for its parent: tokens on stdin, one result per line on
// stdout.
const ChildCommand = "__read-tokens"

// Result is one token's contents, or why it could not be read.
type Result struct {
	Token    Token
	Contents *Contents
	Err      error
	// ReadAt is when the contents were read, where they come from a record
	// (ods-keyguard scan) rather than from the token in this run: zero
	// for a live read.
	ReadAt time.Time

	refused string // the CKR name when the token refused the PIN
}

// TimeoutError is a token that had not answered when the deadline came.
type TimeoutError struct {
	Token Token
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: token %q did not answer in %s s", e.Token.Describe(), e.Token.Label,
		strconv.FormatFloat(e.After.Round(100*time.Millisecond).Seconds(), 'f', -1, 64))
}

// Reader reads tokens in child processes: a PKCS#11 call can hang (a
// network HSM, a module waiting on a lock or a FIFO) and only a process can
// be killed. Tokens with the same environment share a child, since a module
// reads its environment once per process and may be initialized once.
type Reader struct {
	// Exe is the program and arguments that serve ChildCommand; the default
	// is this executable with ChildCommand.
	Exe []string
}

// Read reads every token, each once, in parallel children, and returns the
// results in the order of tokens. At ctx's deadline the children are told
// to stop between two PKCS#11 calls and killed with their process groups
// if they have not within killGrace; a token without an answer by then
// gets a *TimeoutError. Read returns only when every child is reaped.
func (r Reader) Read(ctx context.Context, tokens []Token, req Request) []Result {
	results := make([]Result, len(tokens))
	groups := map[string][]int{}
	var keys []string
	// A token whose PIN it refused before is not logged in to (Logins).
	admitted := make([]Admission, len(tokens))
	for i, t := range tokens {
		results[i].Token = t
		if t.Logins != nil {
			a, err := t.Logins.Admit(t)
			if err != nil {
				results[i].Err = err
				continue
			}
			admitted[i] = a
		}
		k := EnvKey(t.Env)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Add(1)
		go func(idx []int) {
			defer wg.Done()
			r.child(ctx, start, tokens, idx, req, results)
		}(groups[k])
	}
	wg.Wait()
	for i, res := range results {
		if res.refused != "" && admitted[i] != nil {
			results[i].Err = admitted[i].Refused(res.Token, res.refused, res.Err)
		}
	}
	return results
}

// EnvKey is a canonical form of env: tokens with the same one share a
// module's process.
func EnvKey(env map[string]string) string {
	parts := make([]string, 0, len(env))
	for k, v := range env {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, "\x00")
}

// wireToken carries a token, PIN included, to a child over its stdin: never
// on a command line, where ps would show it.
type wireToken struct {
	Name, Kind, Repository, Module, Label string
	PIN                                   wirePIN
}

// wirePIN is the PIN as it crosses to the child: itself in JSON, the
// placeholder in any print of a request, so that a debugging line or an
// error that formats one shows no PIN.
type wirePIN string

func (wirePIN) String() string   { return secret.Value("").String() }
func (wirePIN) GoString() string { return secret.Value("").GoString() }

type wireRequest struct {
	Tokens []wireToken
	Req    Request
	// SnapshotDir is where the child copies SoftHSMv2 tokens to read them
	// (snapshot.go); the parent makes it and removes it once the child
	// is gone, however it ended.
	SnapshotDir string
	// NoSnapshot says why there is no such folder: SoftHSMv2 tokens are
	// then not read at all, rather than read in place.
	NoSnapshot string
}

// wireResult is one line of the child's answer, sent as soon as a token is
// read: a token read before the deadline keeps its answer.
type wireResult struct {
	Index    int       `json:"index"`
	Contents *Contents `json:"contents,omitempty"`
	Err      string    `json:"error,omitempty"`
	// Refused is the CKR name when the token refused the PIN: the parent
	// records it, so that the PIN is not tried again.
	Refused string `json:"refused,omitempty"`
}

// killGrace is how long a child told to stop (SIGTERM) may take to finish
// the PKCS#11 call in progress before it is killed.
const killGrace = time.Second

// finishGrace is how long a child that has answered for every token may
// take to finalize its modules and exit.
const finishGrace = time.Second

// childExe is the program and arguments of a child: exe when set (tests),
// else this executable with the subcommand sub.
func childExe(exe []string, sub string) ([]string, error) {
	if len(exe) > 0 {
		return exe, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return []string{self, sub}, nil
}

// childEnv is the environment of a child that opens t's module: this
// process's, with the token's own variables (SOFTHSM2_CONF and the like).
func childEnv(t Token) []string {
	env := os.Environ()
	for k, v := range t.Env {
		env = append(env, k+"="+v)
	}
	return env
}

// maxChildStderr bounds what is kept of a child's stderr.
const maxChildStderr = 4096

func (r Reader) child(ctx context.Context, start time.Time, tokens []Token, idx []int, req Request, results []Result) {
	answered := make([]bool, len(idx))
	fail := func(err error) {
		for j, i := range idx {
			if !answered[j] {
				results[i].Err = err
			}
		}
	}
	exe, err := childExe(r.Exe, ChildCommand)
	if err != nil {
		fail(fmt.Errorf("start reader process: %w", err))
		return
	}
	wire := wireRequest{Req: req}
	for _, i := range idx {
		t := tokens[i]
		wire.Tokens = append(wire.Tokens, wireToken{t.Name, t.Kind, t.Repository, t.Module, t.Label, wirePIN(t.PIN.Reveal())})
		if mayBeSoftHSM(t) && wire.SnapshotDir == "" && wire.NoSnapshot == "" {
			dir, err := snapshotFolder()
			if err != nil {
				wire.NoSnapshot = err.Error()
				continue
			}
			wire.SnapshotDir = dir
			defer os.RemoveAll(dir)
		}
	}
	in, err := json.Marshal(wire)
	if err != nil {
		fail(err)
		return
	}
	// The grace comes out of the caller's margin: a fifth of the time
	// given, at most killGrace. A healthy call returns in milliseconds.
	grace := killGrace
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, max(dl.Sub(start)/5, 100*time.Millisecond))
	}
	// Once every token has answered, the child has only its modules to
	// finalize: one that hangs there (C_Finalize waiting on a lost
	// appliance) is stopped finishGrace later, not at the deadline.
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := proc.CommandGrace(cctx, grace, exe[0], exe[1:]...)
	cmd.Args[0] = "ods-keyguard"
	cmd.Env = childEnv(tokens[idx[0]])
	cmd.Stdin = bytes.NewReader(in)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fail(err)
		return
	}
	if err := cmd.Start(); err != nil {
		fail(fmt.Errorf("start reader process: %w", err))
		return
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<30)
	pending := len(idx)
	for sc.Scan() {
		var res wireResult
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil || res.Index < 0 || res.Index >= len(idx) {
			continue
		}
		i := idx[res.Index]
		if !answered[res.Index] {
			if pending--; pending == 0 {
				time.AfterFunc(finishGrace, stop)
			}
		}
		answered[res.Index] = true
		results[i].Contents = res.Contents
		if res.Err != "" {
			results[i].Contents, results[i].Err = nil, errors.New(res.Err)
			results[i].refused = res.Refused
		}
	}
	io.Copy(io.Discard, out)
	err = cmd.Wait()
	proc.KillGroup(cmd)
	switch {
	case ctx.Err() != nil:
		// The time it was given, not the grace it took to stop.
		after := time.Since(start)
		if dl, ok := ctx.Deadline(); ok && dl.Sub(start) < after {
			after = dl.Sub(start)
		}
		for j, i := range idx {
			if !answered[j] {
				results[i].Err = &TimeoutError{Token: tokens[i], After: after}
			}
		}
	case err != nil:
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		for j, i := range idx {
			if !answered[j] {
				results[i].Err = fmt.Errorf("%s: reader process: %s", tokens[i].Describe(), msg)
			}
		}
	default:
		for j, i := range idx {
			if !answered[j] {
				results[i].Err = fmt.Errorf("%s: reader process: no answer", tokens[i].Describe())
			}
		}
	}
}

// limitedBuffer keeps the first maxChildStderr bytes written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxChildStderr - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// ServeChild is the child's side: tokens on r, one result line per token
// on w, as each is read, with the modules of this process.
func ServeChild(r io.Reader, w io.Writer, open Opener) error {
	var wire wireRequest
	if err := json.NewDecoder(r).Decode(&wire); err != nil {
		return fmt.Errorf("%s: reading request: %w", ChildCommand, err)
	}
	g := &stopLatch{}
	g.stopOnSignal()
	// The copy is made outside the latch: a child told to stop may stop
	// in the middle of it, since it writes nothing but the copy.
	ms := NewModules(snapshotOpener(g.opener(open), wire.SnapshotDir, wire.NoSnapshot))
	defer ms.Close()
	enc := json.NewEncoder(w)
	// Two configured tokens can be one token with one PIN (a mirror
	// named by its label on the repository's module): after a refusal
	// the second is not logged in to (package pinlock). In memory only.
	refused := map[string]string{}
	for i, t := range wire.Tokens {
		tok := Token{
			Name: t.Name, Kind: t.Kind, Repository: t.Repository,
			Module: t.Module, Label: t.Label, PIN: secret.Value(t.PIN),
		}
		same := t.Module + "\x00" + t.Label + "\x00" + string(t.PIN)
		if code, ok := refused[same]; ok {
			res := wireResult{Index: i, Refused: code,
				Err: fmt.Sprintf("%s: token %q: login: %s (this run, for another name of the same token and PIN: not asked again)", tok.Describe(), t.Label, code)}
			if err := enc.Encode(res); err != nil {
				return err
			}
			continue
		}
		c, err := ms.Read(tok, wire.Req)
		res := wireResult{Index: i, Contents: c}
		if err != nil {
			res.Err = err.Error()
			res.Refused = pinRefusal(err)
			if res.Refused != "" {
				refused[same] = res.Refused
			}
		}
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
	return nil
}

// pinRefusal names the CKR codes that mean "this PIN was refused" and may
// count towards a lockout.
func pinRefusal(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		return ""
	}
	switch e.Code {
	case 0xA0:
		return "CKR_PIN_INCORRECT"
	case 0xA4:
		return "CKR_PIN_LOCKED"
	case 0xA3:
		return "CKR_PIN_EXPIRED"
	case 0xA2:
		return "CKR_PIN_LEN_RANGE"
	}
	return ""
}
