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
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

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
	s.Properties.Set("onFailureFrom", &jsonschema.Schema{Type: "integer", Minimum: json.Number("0"),
		Description: "the first step (from 0) whose failure runs onFailure (default 0: any step's)"})
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

// The patterns are read by validators in many languages, each with its own regex
// engine (JSON Schema names ECMAScript's syntax; Go's validators use RE2, Python's
// jsonschema re.search, Java's java.util.regex), so they keep to what those engines
// read alike:
//   - no lookahead or lookbehind: RE2 has none;
//   - no \d, \w or \s: Python reads them over all of Unicode, Go and Java over ASCII,
//     and JavaScript's \s is Unicode's whitespace plus U+FEFF. Classes are spelled out:
//     digits as [0-9], the worker's whitespace (unicode.IsSpace) as the characters
//     themselves (see space);
//   - only \xhh escapes: \u2028 is not RE2's and \x{2028} neither Python's nor
//     JavaScript's, so a character above U+00FF stands in the pattern as itself, which
//     the JSON file spells \u2028 (see escapeInvisible);
//   - "$" ends the value only in Go and JavaScript: Python's also matches before a
//     final "\n" (issue 22: "rot-0001\n" passed as an id), Java's before a final
//     \n, \r\n, \r, U+0085, U+2028 or U+2029, and no anchor that means "the very end"
//     is common to all (\z is not JavaScript's, Python's \Z is not Java's). So each
//     anchored pattern goes with "not": {"pattern": "[<terminators>]"}, which rejects a
//     value holding any line terminator the pattern refuses anyway (see anchored). A
//     "contains" test needs no anchor, so every engine reads it the same way.
//
// portable_test.go checks these rules on the generated files, and the patterns'
// verdicts against the worker's; examples/python/check_corpus.py (make check-python)
// checks Python's jsonschema, with the real re, against the worker.

// lineTerminators are the characters before which some engine's "$" also matches at
// the end of a value (Java's set; Python's is "\n" alone). U+2028 and U+2029 have no
// escape RE2 and Python share: they stand as themselves.
const lineTerminators = `\n\r\x85` + "\u2028\u2029"

// nameTerminators are the line terminators a name may not hold (controls). A name may
// hold U+2028 and U+2029, as the worker allows, and its class takes them too: an
// engine whose "$" skips a final one accepts the same names.
const nameTerminators = `\n\r\x85`

// anchored sets an anchored pattern and, beside it, the test that the value holds
// none of terminators, the line terminators the pattern refuses anywhere: without it
// Python and Java would accept a value that ends in one (see above).
func anchored(prop *jsonschema.Schema, pattern, terminators string) {
	prop.Pattern = pattern
	prop.Not = &jsonschema.Schema{Pattern: "[" + terminators + "]",
		Description: "no line terminator: some validators' $ matches before a final one"}
}

// space is the body of a regex class of the characters unicode.IsSpace reports, the
// worker's whitespace, but for the controls among them (\t, \n, U+0085, ...), which
// every class that holds space excludes anyway (ctl); see above for why it is not \s.
var space = func() string {
	var b strings.Builder
	char := func(r rune) string {
		if r <= 0xff {
			return fmt.Sprintf(`\x%02x`, r)
		}
		return string(r)
	}
	isSpace := func(r rune) bool { return unicode.IsSpace(r) && !unicode.IsControl(r) }
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !isSpace(r) {
			continue
		}
		last := r
		for last+1 <= unicode.MaxRune && isSpace(last+1) {
			last++
		}
		b.WriteString(char(r))
		if last > r {
			b.WriteString("-" + char(last))
		}
		r = last
	}
	return b.String()
}()

// base64Pattern is standard base64 with padding and zero unused bits, as the worker
// decodes it (strictly): a file's bytes.
const base64Pattern = `^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$`

// notAfterPattern is an RFC 3339 date-time that the worker reads (time.Parse with
// time.RFC3339): upper-case T and Z, no leap second (Go refuses :60), a day that its
// month has in that year. The schema's format date-time says it too, but format is an
// annotation a validator need not assert (Python's jsonschema asserts date-time only
// with rfc3339-validator installed, which Debian does not package), so the pattern
// carries the rule everywhere. [0-9], not \d (see above).
var notAfterPattern = func() string {
	const (
		d2        = `[0-9]{2}`
		leapYear  = `(?:` + d2 + `(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)`
		monthDays = `[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))`
		date      = `(?:` + monthDays + `|` + leapYear + `-02-29)`
		clock     = `(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?`
		offset    = `(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])`
	)
	return `^` + date + `T` + clock + offset + `$`
}()

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
				// The worker refuses line breaks anywhere, and U+2028/U+2029 are not base64.
				anchored(&plain, base64Pattern, lineTerminators)
				prop.OneOf = []*jsonschema.Schema{&plain, prop.OneOf[1]}
			}
		case ft.Kind() == reflect.String && strings.Contains(f.Tag.Get("apiops"), "base64"):
			anchored(prop, base64Pattern, lineTerminators)
			if !strings.Contains(opts, "omitempty") && prop.MinLength == nil {
				prop.MinLength = ptr[uint64](1)
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
	"proxy.verify": func(p *jsonschema.Schema) {
		list, _ := p.Properties.Get("environmentNameList")
		list.UniqueItems = true
	},
	"key.update": func(p *jsonschema.Schema) {
		p.AnyOf = requireOneOf("name", "description", "keyType", "cryptoKeyInfoEnvironmentList")
		p.Description = "Must change something."
	},
	"certificate.update": func(p *jsonschema.Schema) {
		p.AnyOf = requireOneOf("description", "pemEncodedFile", "environmentList")
		p.Description = "Must change something."
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
		key := &jsonschema.Schema{Type: "string", Description: what}
		anchored(key, "^X[A-Z2-7]{55}$", lineTerminators)
		return key
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
	id, _ := s.Properties.Get("id")
	anchored(id, id.Pattern, lineTerminators)
	project, _ := s.Properties.Get("project")
	project.MinLength, project.MaxLength = ptr[uint64](1), ptr[uint64](messages.MaxNameLength)
	anchored(project, `^[^.*>`+space+`/\\`+ctl+`]+$`, lineTerminators)
	replyTo, _ := s.Properties.Get("replyTo")
	token := `[^.` + space + ctl + `]`
	// Tokens are not empty, hold no whitespace and are not the wildcards * or >. The
	// first two are _INBOX and the project, which the schema cannot know.
	next := `(?:[^.*>` + space + ctl + `]` + token + `*|[*>]` + token + `+)`
	anchored(replyTo, `^_INBOX\.`+next+`(?:\.`+next+`)+$`, lineTerminators)
	replyTo.Description = "a NATS subject under _INBOX.<project>., the project's inbox: the result is published there too (core NATS)"
	notAfter, _ := s.Properties.Get("notAfter")
	anchored(notAfter, notAfterPattern, lineTerminators)
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
		case strings.Contains(tag, "path") && f.Type.Kind() == reflect.String:
			markName(prop, "A name that becomes one URL path segment: no /, \\ or control characters, not . or ..")
		case strings.Contains(tag, "keystore-id="):
			markName(prop, "A keystore's name: no /, \\ or control characters, not . or ..; \"\" clears the setting")
			prop.MinLength, prop.Pattern = nil, strings.Replace(prop.Pattern, "^(?:", "^(?:|", 1)
		case name == "deployTargetEnvironmentNameList" || name == "environmentNameList" || name == "environmentList":
			markName(prop.Items, "An environment's name: no /, \\ or control characters, not . or ..")
		}
	}
}

func markName(prop *jsonschema.Schema, description string) {
	prop.MinLength, prop.MaxLength = ptr[uint64](1), ptr[uint64](messages.MaxNameLength)
	// No lookahead: validators in several languages (Go's among them) lack it.
	const c = `[^/\\\x00-\x1f\x7f-\x9f`
	anchored(prop, `^(?:`+c+`.]`+c+`]*|\.`+c+`.]`+c+`]*|\.\.`+c+`]+)$`, nameTerminators)
	prop.Description = description
}

func add(files map[string][]byte, name string, s *jsonschema.Schema) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("schema %s: %w", name, err)
	}
	files[name] = append(escapeInvisible(data), '\n')
	return nil
}

// escapeInvisible writes the characters outside ASCII that print as nothing or as a
// blank (the whitespace the patterns hold as themselves, see space) as JSON \u
// escapes: the same JSON, and a file in which a reader sees them. They occur only in
// strings, where the escape means the character.
func escapeInvisible(data []byte) []byte {
	out := make([]byte, 0, len(data))
	for _, r := range string(data) {
		if r <= unicode.MaxASCII || unicode.IsPrint(r) {
			out = utf8.AppendRune(out, r)
			continue
		}
		if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
			continue
		}
		out = fmt.Appendf(out, `\u%04x`, r)
	}
	return out
}

func ptr[T any](v T) *T { return &v }
