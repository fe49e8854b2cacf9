// Package schema generates JSON Schema files for the command of each type and for the
// result from the Go types in package messages. The generated files are checked in
// beside this file; `make schema` rewrites them and a test fails when they drift.
// It is a package of its own so that importing messages does not pull in the generator.
package schema

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/invopop/jsonschema"
	orderedmap "github.com/pb33f/ordered-map/v2"

	"github.com/apiops-worker/apiops-worker/messages"
)

const baseID = "https://github.com/apiops-worker/apiops-worker/messages/schema/"

// envelope is the command without params, which are filled in per type.
type envelope struct {
	ID            string    `json:"id" jsonschema:"minLength=1,maxLength=128,pattern=^[A-Za-z0-9._:-]+$,description=Unique per command; the idempotency key."`
	Type          string    `json:"type,omitempty" jsonschema:"description=If present must equal the subject's <type>."`
	Project       string    `json:"project,omitempty" jsonschema:"description=If present must equal the subject's <project>."`
	CorrelationID string    `json:"correlationId,omitempty" jsonschema:"maxLength=128,description=Echoed in the result."`
	ReplyTo       string    `json:"replyTo,omitempty" jsonschema:"description=A NATS subject the result is also published to."`
	NotAfter      time.Time `json:"notAfter,omitempty" jsonschema:"description=A command not started by then is not executed (status expired)."`
	Params        struct{}  `json:"params"`
}

// Files returns every schema file by name: <type>.json for each command type, and
// result.json.
func Files() (map[string][]byte, error) {
	files := make(map[string][]byte)
	for _, ct := range messages.Types() {
		s := reflector().Reflect(&envelope{})
		s.ID = jsonschema.ID(baseID + ct.Name + ".json")
		s.Title = ct.Name + " command"
		s.Description = ct.Summary + " APIOps call: " + ct.Method + " " + ct.Path
		typeProp, _ := s.Properties.Get("type")
		typeProp.Const = ct.Name
		params := reflector().ReflectFromType(ct.ParamsType())
		params.Version, params.ID = "", ""
		markPathNames(params, ct.ParamsType())
		s.Properties.Set("params", params)
		if err := add(files, ct.Name+".json", s); err != nil {
			return nil, err
		}
	}
	result := reflector().Reflect(&messages.Result{})
	result.ID = baseID + "result.json"
	result.Title = "command result"
	if err := add(files, "result.json", result); err != nil {
		return nil, err
	}
	return files, nil
}

func reflector() *jsonschema.Reflector {
	return &jsonschema.Reflector{
		DoNotReference: true,
		ExpandedStruct: true,
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t == reflect.TypeFor[messages.Secret]() {
				return secretSchema()
			}
			return nil
		},
	}
}

// secretSchema: a plaintext string, or a value sealed for the workers' key (see the
// contract's "Sealed secrets").
func secretSchema() *jsonschema.Schema {
	curveKey := func(what string) *jsonschema.Schema {
		return &jsonschema.Schema{Type: "string", Pattern: "^X[A-Z2-7]{55}$", Description: what}
	}
	sealed := &jsonschema.Schema{
		Type:                 "object",
		Description:          "a sealed secret: the box of {\"project\", \"field\", \"value\"} made by nkeys Seal (xkv1) for the worker's key",
		Required:             []string{"sealed", "for", "from"},
		AdditionalProperties: jsonschema.FalseSchema,
		Properties:           orderedmap.New[string, *jsonschema.Schema](),
	}
	sealed.Properties.Set("sealed", &jsonschema.Schema{Type: "string", ContentEncoding: "base64", MinLength: ptr[uint64](60),
		Description: "standard base64 of the xkv1 box: \"xkv1\", a 24-byte nonce, the XSalsa20-Poly1305 ciphertext"})
	sealed.Properties.Set("for", curveKey("the worker's public curve key the value is sealed for"))
	sealed.Properties.Set("from", curveKey("the sender's public curve key, made for this value alone"))
	return &jsonschema.Schema{
		Description: "secret: never logged; plaintext is redacted in dead letters, sealed values are kept",
		OneOf: []*jsonschema.Schema{
			{Type: "string", MinLength: ptr[uint64](1), Description: "the secret in plaintext"},
			sealed,
		},
	}
}

// markPathNames states the path-name rules that the struct tags cannot express.
func markPathNames(s *jsonschema.Schema, t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !strings.Contains(f.Tag.Get("apiops"), "path") {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if prop, ok := s.Properties.Get(name); ok {
			prop.MinLength, prop.MaxLength = ptr[uint64](1), ptr[uint64](messages.MaxNameLength)
			prop.Pattern = `^(?!\.\.?$)[^/\\\x00-\x1f\x7f]+$`
			prop.Description = "A name that becomes one URL path segment: no /, \\ or control characters, not . or .."
		}
	}
}

func add(files map[string][]byte, name string, s *jsonschema.Schema) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("schema %s: %w", name, err)
	}
	files[name] = append(data, '\n')
	return nil
}

func ptr[T any](v T) *T { return &v }
