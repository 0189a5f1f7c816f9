// Package jsondoc makes the documents that --json prints: each names its
// schema first ("ods-keyguard/NAME/1", described by schema/NAME.json in
// the repository and under /usr/share/doc/ods-keyguard/schema), then
// carries the fields of its body, so that no command writes the wrapper
// by hand.
package jsondoc

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Schema is the schema field of the document named name: "check" gives
// "ods-keyguard/check/1".
func Schema(name string) string { return "ods-keyguard/" + name + "/1" }

// Doc is a document: the schema, then the fields of Body, which must
// encode as a JSON object (a struct, or a pointer to one).
type Doc struct {
	Name string
	Body any
}

// New is the document name with body's fields.
func New(name string, body any) Doc { return Doc{Name: name, Body: body} }

// MarshalJSON writes {"schema": ..., the body's fields}.
func (d Doc) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the encoder around it decides
	if err := enc.Encode(d.Body); err != nil {
		return nil, err
	}
	body := bytes.TrimSpace(b.Bytes())
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("document %s: its body is no JSON object", Schema(d.Name))
	}
	head, _ := json.Marshal(Schema(d.Name))
	out := append([]byte(`{"schema":`), head...)
	if len(body) > 2 {
		out = append(out, ',')
	}
	return append(out, body[1:]...), nil
}
