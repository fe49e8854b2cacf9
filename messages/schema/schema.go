// Package schema generates JSON Schema files for the command of each type and for the
// result from the Go types in package messages. The generated files are checked in
// beside this file; `make schema` rewrites them and a test fails when they drift.
// It is a package of its own so that importing messages does not pull in the generator.
package schema

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
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
	var steps []*jsonschema.Schema // a plan's step may be a command of any type
	for _, ct := range messages.Types() {
		s := reflector().Reflect(&envelope{})
		s.ID = jsonschema.ID(baseID + ct.Name + ".json")
		s.Title = ct.Name + " command"
		s.Description = ct.Summary + " APIOps call: " + ct.Method + " " + ct.Path
		typeProp, _ := s.Properties.Get("type")
		typeProp.Const = ct.Name
		markEnvelope(s)
		s.Properties.Set("params", paramsSchema(ct))
		if err := add(files, ct.Name+".json", s); err != nil {
			return nil, err
		}
		step := &jsonschema.Schema{Type: "object", Required: []string{"type", "params"}, AdditionalProperties: jsonschema.FalseSchema,
			Properties: orderedmap.New[string, *jsonschema.Schema]()}
		step.Properties.Set("type", &jsonschema.Schema{Const: ct.Name})
		step.Properties.Set("params", paramsSchema(ct))
		steps = append(steps, step)
	}
	if err := add(files, messages.PlanType+".json", planSchema(steps)); err != nil {
		return nil, err
	}
	result := reflector().Reflect(&messages.Result{})
	result.ID = baseID + "result.json"
	result.Title = "command result"
	if err := add(files, "result.json", result); err != nil {
		return nil, err
	}
	return files, nil
}

func paramsSchema(ct messages.CommandType) *jsonschema.Schema {
	params := reflector().ReflectFromType(ct.ParamsType())
	params.Version, params.ID = "", ""
	markPathNames(params, ct.ParamsType())
	applyFieldRules(params, ct.ParamsType())
	if rules := crossFieldRules[ct.Name]; rules != nil {
		rules(params)
	}
	return params
}

// planSchema is a plan's: the envelope without params, and steps, each a command of
// one of the types without the envelope.
func planSchema(steps []*jsonschema.Schema) *jsonschema.Schema {
	s := reflector().Reflect(&envelope{})
	s.ID = jsonschema.ID(baseID + messages.PlanType + ".json")
	s.Title = "plan command"
	s.Description = "Steps that run in order, each a command of the plan's project; the first that does not succeed stops the plan, the later ones are skipped and onFailure runs."
	typeProp, _ := s.Properties.Get("type")
	typeProp.Const = messages.PlanType
	markEnvelope(s)
	id, _ := s.Properties.Get("id")
	id.MaxLength = ptr[uint64](messages.MaxIDLength - uint64(len(":undo-100")))
	s.Properties.Delete("params")
	s.Required = slices.DeleteFunc(s.Required, func(r string) bool { return r == "params" })
	s.Required = append(s.Required, "steps")
	list := func(least uint64) *jsonschema.Schema {
		return &jsonschema.Schema{Type: "array", MinItems: ptr(least), MaxItems: ptr[uint64](messages.MaxPlanSteps), Items: &jsonschema.Schema{OneOf: steps}}
	}
	s.Properties.Set("steps", list(1))
	s.Properties.Set("onFailure", list(0))
	s.Properties.Set("partialSucceeds", &jsonschema.Schema{Type: "boolean", Description: "a step whose status is partial lets the plan go on (default false: it stops it)"})
	return s
}

func reflector() *jsonschema.Reflector {
	return &jsonschema.Reflector{
		DoNotReference: true,
		ExpandedStruct: true,
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			switch t {
			case reflect.TypeFor[messages.Secret]():
				return secretSchema()
			case reflect.TypeFor[[]messages.Result]():
				// A plan's step results are results: the document's own schema.
				return &jsonschema.Schema{Type: "array", Items: &jsonschema.Schema{Ref: "#"}}
			}
			return nil
		},
	}
}

// base64Pattern is standard base64 with padding and zero unused bits, as the worker
// decodes it (strictly): a file's bytes.
const base64Pattern = `^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$`

// applyFieldRules states what the struct tags cannot: a required string is not empty,
// and a base64 secret, when plaintext, is standard base64. It follows structs and
// lists of structs.
func applyFieldRules(s *jsonschema.Schema, t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		prop, ok := s.Properties.Get(name)
		if !ok {
			continue
		}
		ft := f.Type
		switch {
		case ft == reflect.TypeFor[messages.Secret]():
			if strings.Contains(f.Tag.Get("apiops"), "base64") {
				plain := *prop.OneOf[0]
				plain.Pattern = base64Pattern
				prop.OneOf = []*jsonschema.Schema{&plain, prop.OneOf[1]}
			}
		case ft.Kind() == reflect.String && !strings.Contains(opts, "omitempty"):
			if prop.MinLength == nil {
				prop.MinLength = ptr[uint64](1)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && prop.Items != nil:
			applyFieldRules(prop.Items, ft.Elem())
		case ft.Kind() == reflect.Struct:
			applyFieldRules(prop, ft)
		}
	}
}

// crossFieldRules are the rules of the params types' validate methods (package
// messages), by command type, as JSON Schema says them.
var crossFieldRules = map[string]func(params *jsonschema.Schema){
	"keystore.update": func(p *jsonschema.Schema) {
		p.DependentRequired = map[string][]string{"updateScope": {"jwkUpdateAction"}}
		p.If = &jsonschema.Schema{Required: []string{"updateScope"}}
		p.Then = withProperty(&jsonschema.Schema{}, "jwkUpdateAction", &jsonschema.Schema{Const: "UPDATE"})
		p.AnyOf = requireOneOf("name", "description", "keyStoreEnvironmentList", "jwkUpdateAction")
		p.Description = "Must change something; updateScope only with jwkUpdateAction UPDATE."
	},
	"proxy.mtls.update": func(p *jsonschema.Schema) {
		p.AnyOf = requireOneOf("enabled", "keyStoreId", "keyStoreName", "trustStoreId", "trustStoreName",
			"supportedProtocolList", "hostnameVerifierType", "disableSslValidation")
		nonEmpty := func(field string) *jsonschema.Schema {
			return withProperty(&jsonschema.Schema{Required: []string{field}}, field, &jsonschema.Schema{MinLength: ptr[uint64](1)})
		}
		deploying := withProperty(&jsonschema.Schema{Required: []string{"deploy"}}, "deploy", &jsonschema.Schema{Const: true})
		p.AllOf = []*jsonschema.Schema{
			{Not: &jsonschema.Schema{Required: []string{"keyStoreId", "keyStoreName"}}},
			{Not: &jsonschema.Schema{Required: []string{"trustStoreId", "trustStoreName"}}},
			{
				If:   withProperty(&jsonschema.Schema{Required: []string{"enabled"}}, "enabled", &jsonschema.Schema{Const: true}),
				Then: &jsonschema.Schema{AnyOf: []*jsonschema.Schema{nonEmpty("keyStoreId"), nonEmpty("keyStoreName")}},
			},
			{
				If: deploying,
				Then: withProperty(&jsonschema.Schema{Required: []string{"deployTargetEnvironmentNameList"}},
					"deployTargetEnvironmentNameList", &jsonschema.Schema{MinItems: ptr[uint64](1)}),
				Else: &jsonschema.Schema{Not: &jsonschema.Schema{Required: []string{"deployTargetEnvironmentNameList"}}},
			},
		}
		p.Description = "Must set at least one mTLS setting; a keystore by id or by name, not both; enabled: true needs a keystore; " +
			"deployTargetEnvironmentNameList with deploy: true, and only then."
	},
}

// requireOneOf: at least one of the fields is present.
func requireOneOf(fields ...string) []*jsonschema.Schema {
	out := make([]*jsonschema.Schema, len(fields))
	for i, f := range fields {
		out[i] = &jsonschema.Schema{Required: []string{f}}
	}
	return out
}

func withProperty(s *jsonschema.Schema, name string, prop *jsonschema.Schema) *jsonschema.Schema {
	s.Properties = orderedmap.New[string, *jsonschema.Schema]()
	s.Properties.Set(name, prop)
	return s
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

// markEnvelope states the envelope's rules that the struct tags cannot: the project is
// one subject token and a name, and replyTo is a NATS subject the worker may publish
// to. Whether they match the subject, and whether replyTo lies under the worker's own
// prefix or inbox (settings of the worker), only the worker can tell.
func markEnvelope(s *jsonschema.Schema) {
	const ctl = `\x00-\x1f\x7f-\x9f`
	project, _ := s.Properties.Get("project")
	project.MinLength, project.MaxLength = ptr[uint64](1), ptr[uint64](messages.MaxNameLength)
	project.Pattern = `^[^.*>\s/\\` + ctl + `]+$`
	replyTo, _ := s.Properties.Get("replyTo")
	token := `[^.\s` + ctl + `]`
	// Tokens are not empty, hold no whitespace and are not the wildcards * or >. The
	// first two are _INBOX and the project, which the schema cannot know.
	next := `(?:[^.\s*>` + ctl + `]` + token + `*|[*>]` + token + `+)`
	replyTo.Pattern = `^_INBOX\.` + next + `(?:\.` + next + `)+$`
	replyTo.Description = "a NATS subject under _INBOX.<project>., the project's inbox: the result is published there too (core NATS)"
}

// markPathNames states the name rules that the struct tags cannot express, for the
// names that become path segments and the other names the worker checks the same way
// (keystores named in a body, deployment environments).
func markPathNames(s *jsonschema.Schema, t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		prop, ok := s.Properties.Get(name)
		switch tag := f.Tag.Get("apiops"); {
		case !ok:
		case strings.Contains(tag, "path"):
			markName(prop, "A name that becomes one URL path segment: no /, \\ or control characters, not . or ..")
		case strings.Contains(tag, "keystore-id="):
			markName(prop, "A keystore's name: no /, \\ or control characters, not . or ..; \"\" clears the setting")
			prop.MinLength, prop.Pattern = nil, strings.Replace(prop.Pattern, "^(?:", "^(?:|", 1)
		case name == "deployTargetEnvironmentNameList":
			markName(prop.Items, "An environment's name: no /, \\ or control characters, not . or ..")
		}
	}
}

func markName(prop *jsonschema.Schema, description string) {
	prop.MinLength, prop.MaxLength = ptr[uint64](1), ptr[uint64](messages.MaxNameLength)
	// No lookahead: validators in several languages (Go's among them) lack it.
	const c = `[^/\\\x00-\x1f\x7f-\x9f`
	prop.Pattern = `^(?:` + c + `.]` + c + `]*|\.` + c + `.]` + c + `]*|\.\.` + c + `]+)$`
	prop.Description = description
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
