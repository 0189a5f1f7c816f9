package hsmcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"

	"github.com/ods-keyguard/ods-keyguard/config"
)

// ChildCommand is the hidden subcommand that reads tokens in a child process
// started with another environment.
const ChildCommand = "__read-tokens"

// Result is one token's inventory, or why it could not be read.
type Result struct {
	Token     config.Token
	Inventory *Inventory
	Err       error
}

// ReadAll reads every token, each once. A PKCS#11 module reads its
// environment (SOFTHSM2_CONF, ChrystokiConfigurationPath ...) once per
// process, so tokens whose env differs from this process's are read by a
// child process per distinct environment, in parallel with the rest.
// Results come in the order of tokens.
func ReadAll(ctx context.Context, tokens []config.Token) []Result {
	return readAll(ctx, tokens, request{})
}

// ReadIDs is ReadAll for only the keys whose CKA_ID is in ids (hex): one
// search per key, for the hook, which must not list a token of thousands.
func ReadIDs(ctx context.Context, tokens []config.Token, ids []string) []Result {
	if ids == nil {
		ids = []string{}
	}
	return readAll(ctx, tokens, request{IDs: ids})
}

// ReadPresence is ReadAll without the public-key objects: which private
// keys are there, of what type and size, but no fingerprint where the
// private object carries no public half (EC). For check, which must answer
// within a scheduler's time limit.
func ReadPresence(ctx context.Context, tokens []config.Token) []Result {
	return readAll(ctx, tokens, request{NoPublic: true})
}

// request says which keys to read and how much of them.
type request struct {
	IDs      []string // nil: every key
	NoPublic bool     // skip the public-key objects
}

func readAll(ctx context.Context, tokens []config.Token, req request) []Result {
	results := make([]Result, len(tokens))
	groups := map[string][]int{}
	var local []int
	for i, t := range tokens {
		results[i].Token = t
		if key := envKey(t.Env); key != "" {
			groups[key] = append(groups[key], i)
		} else {
			local = append(local, i)
		}
	}
	var wg sync.WaitGroup
	for _, idx := range groups {
		wg.Add(1)
		go func(idx []int) {
			defer wg.Done()
			readInChild(ctx, tokens, idx, req, results)
		}(idx)
	}
	if len(local) > 0 {
		ms := NewModules(OpenModule)
		for _, i := range local {
			results[i].Inventory, results[i].Err = ms.read1(tokens[i], req)
		}
		ms.Close()
	}
	wg.Wait()
	return results
}

// envKey is "" when env changes nothing in this process's environment, else
// a canonical form of it.
func envKey(env map[string]string) string {
	var parts []string
	differs := false
	for k, v := range env {
		if cur, ok := os.LookupEnv(k); !ok || cur != v {
			differs = true
		}
		parts = append(parts, k+"="+v)
	}
	if !differs {
		return ""
	}
	sort.Strings(parts)
	return strings.Join(parts, "\x00")
}

// wireToken carries a token, PIN included, to a child over its stdin: never
// on a command line, where ps would show it.
type wireToken struct {
	Name, Kind, Repository, Module, Label string
	PIN                                   string
	Req                                   request
}

type wireResult struct {
	Inventory *Inventory `json:"inventory,omitempty"`
	Err       string     `json:"error,omitempty"`
}

func readInChild(ctx context.Context, tokens []config.Token, idx []int, req request, results []Result) {
	fail := func(err error) {
		for _, i := range idx {
			results[i].Err = fmt.Errorf("%s: %w", tokens[i].Describe(), err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		fail(fmt.Errorf("start reader process: %w", err))
		return
	}
	wire := make([]wireToken, len(idx))
	for j, i := range idx {
		t := tokens[i]
		wire[j] = wireToken{t.Name, t.Kind, t.Repository, t.Module, t.Label, t.PIN.Reveal(), req}
	}
	in, err := json.Marshal(wire)
	if err != nil {
		fail(err)
		return
	}
	cmd := exec.CommandContext(ctx, self, ChildCommand)
	cmd.Args[0] = "ods-keyguard"
	env := os.Environ()
	for k, v := range tokens[idx[0]].Env {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		fail(fmt.Errorf("reader process: %s", msg))
		return
	}
	var out []wireResult
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out) != len(idx) {
		fail(errors.New("reader process: unreadable answer"))
		return
	}
	for j, i := range idx {
		results[i].Inventory = out[j].Inventory
		if out[j].Err != "" {
			results[i].Err = errors.New(out[j].Err)
		}
	}
}

// ServeChild is the child's side: tokens on r, results on w.
func ServeChild(r io.Reader, w io.Writer) error {
	var wire []wireToken
	if err := json.NewDecoder(r).Decode(&wire); err != nil {
		return fmt.Errorf("%s: reading request: %w", ChildCommand, err)
	}
	ms := NewModules(OpenModule)
	defer ms.Close()
	out := make([]wireResult, len(wire))
	for i, t := range wire {
		inv, err := ms.read1(config.Token{
			Name: t.Name, Kind: t.Kind, Repository: t.Repository,
			Module: t.Module, Label: t.Label, PIN: config.Secret(t.PIN),
		}, t.Req)
		out[i].Inventory = inv
		if err != nil {
			out[i].Err = err.Error()
		}
	}
	return json.NewEncoder(w).Encode(out)
}
