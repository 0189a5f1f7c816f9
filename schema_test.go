package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The JSON documents are an interface: schema/NAME.json describes the
// output of each command's --json, schema/common.json what they share.

const schemaBase = "https://ods-keyguard.invalid/schema/"

var (
	schemasOnce sync.Once
	schemas     map[string]*jsonschema.Schema
	schemasErr  error
)

// loadSchemas compiles every schema in schema/, formats asserted.
func loadSchemas() (map[string]*jsonschema.Schema, error) {
	schemasOnce.Do(func() {
		files, err := filepath.Glob("schema/*.json")
		if err != nil || len(files) == 0 {
			schemasErr = fmt.Errorf("no schema/*.json: %v", err)
			return
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		c.DefaultDraft(jsonschema.Draft2020)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				schemasErr = err
				return
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
			if err != nil {
				schemasErr = fmt.Errorf("%s: %v", f, err)
				return
			}
			if err := c.AddResource(schemaBase+filepath.Base(f), doc); err != nil {
				schemasErr = fmt.Errorf("%s: %v", f, err)
				return
			}
		}
		schemas = map[string]*jsonschema.Schema{}
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".json")
			s, err := c.Compile(schemaBase + filepath.Base(f))
			if err != nil {
				schemasErr = fmt.Errorf("%s: %v", f, err)
				return
			}
			schemas[name] = s
		}
	})
	return schemas, schemasErr
}

// validateJSON checks doc against schema name, and that its "schema"
// field names that schema, version 1.
func validateJSON(name string, data []byte) error {
	all, err := loadSchemas()
	if err != nil {
		return err
	}
	s, ok := all[name]
	if !ok || name == "common" {
		return fmt.Errorf("no schema %q in schema/", name)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if err := s.Validate(doc); err != nil {
		// %#v: every failing path, not only the top.
		return fmt.Errorf("%s: %#v", name, err)
	}
	var head struct{ Schema string }
	json.Unmarshal(data, &head)
	if want := "ods-keyguard/" + name + "/1"; head.Schema != want {
		return fmt.Errorf(`"schema" is %q, want %q`, head.Schema, want)
	}
	return nil
}

// jsonschema NAME [FILE]: validate FILE (default stdout) against
// schema/NAME.json.
func cmdJSONSchema(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: jsonschema NAME [FILE]")
	}
	file := "stdout"
	if len(args) == 2 {
		file = args[1]
	}
	err := validateJSON(args[0], []byte(ts.ReadFile(file)))
	switch {
	case neg && err == nil:
		ts.Fatalf("%s is valid against schema %s", file, args[0])
	case !neg && err != nil:
		ts.Fatalf("%v", err)
	}
}

// Every schema compiles, and every command's schema is checked by some
// script against real output.
func TestSchemas(t *testing.T) {
	all, err := loadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	scripts, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, s := range scripts {
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		text.Write(data)
	}
	for name := range all {
		if name == "common" {
			continue
		}
		re := regexp.MustCompile(`(?m)^(\[[^]]*\] )?jsonschema ` + regexp.QuoteMeta(name) + `( |$)`)
		if !re.MatchString(text.String()) {
			t.Errorf("schema/%s.json: no script validates output against it", name)
		}
	}
	// A document that breaks a schema is refused, naming where.
	err = validateJSON("verify", []byte(`{"schema":"ods-keyguard/verify/1","verdict":"fine","tokens":[],"key_count":0,"problems":[],"orphans":[]}`))
	if err == nil || !strings.Contains(err.Error(), "verdict") {
		t.Errorf("bad verdict: %v", err)
	}
	err = validateJSON("verify", []byte(`{"schema":"ods-keyguard/verify/1","verdict":"clean","tokens":[],"key_count":0,"problems":[],"orphans":[],"extra":1}`))
	if err == nil {
		t.Error("an undocumented field passed")
	}
}
