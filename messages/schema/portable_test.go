package schema_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/messages/schema"
)

// generated returns the generated schema files, decoded.
func generated(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := schema.Files()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]map[string]any)
	for name, data := range files {
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = doc
	}
	return out
}

// stringRule is one string schema's pattern and the "not" test beside it.
type stringRule struct {
	where          string
	pattern, guard *regexp.Regexp
}

// accepts is the schema's verdict, as Go reads the patterns.
func (r stringRule) accepts(s string) bool {
	return r.pattern.MatchString(s) && (r.guard == nil || !r.guard.MatchString(s))
}

// readAs is the verdict of an engine whose "$" at the end of the pattern also matches
// before a final terminator, one of terminators (a regex alternation).
func (r stringRule) readAs(terminators, s string) bool {
	src := r.pattern.String()
	re := regexp.MustCompile(strings.TrimSuffix(src, "$") + "(?:" + terminators + ")?$")
	return re.MatchString(s) && (r.guard == nil || !r.guard.MatchString(s))
}

// rules finds every schema with a pattern in the generated files.
func rules(t *testing.T) []stringRule {
	t.Helper()
	var out []stringRule
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if p, ok := v["pattern"].(string); ok {
				r := stringRule{where: where, pattern: regexp.MustCompile(p)}
				if not, ok := v["not"].(map[string]any); ok {
					if g, ok := not["pattern"].(string); ok {
						r.guard = regexp.MustCompile(g)
					}
				}
				out = append(out, r)
			}
			for k, e := range v {
				walk(where+"/"+k, e)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s/%d", where, i), e)
			}
		}
	}
	for name, doc := range generated(t) {
		walk(name, doc)
	}
	if len(out) == 0 {
		t.Fatal("no patterns found")
	}
	return out
}

// TestPatternsArePortable checks the rules of schema.go's comment on patterns: only
// the syntax that Go's, Python's, Java's and JavaScript's engines read alike, and
// beside every anchored pattern a "not" that keeps a final line terminator from
// passing where "$" matches before one. Python's and Java's "$" are modelled here on
// what their documentation says (examples/python/check_corpus.py runs the real Python).
func TestPatternsArePortable(t *testing.T) {
	// Values that some pattern accepts: each pattern must accept one, so that the
	// terminators below are tried after a value it takes.
	samples := []string{"rot-0001", "MyProject", "_INBOX.MyProject.r1", "api-user", "名前", ".", "..", "", "QUJD", "QQ==",
		"2026-11-22T12:00:00Z", "X" + strings.Repeat("A", 55)}
	const (
		python = `\n`
		java   = `\r\n|[\n\r\x{85}\x{2028}\x{2029}]`
	)
	terminators := []string{"\n", "\r", "\r\n", "\u0085", "\u2028", "\u2029"}
	seen := map[string]bool{}
	for _, r := range rules(t) {
		src := r.pattern.String()
		if seen[src] {
			continue
		}
		seen[src] = true
		if problem := unportable(src); problem != "" {
			t.Errorf("%s: pattern %q: %s", r.where, src, problem)
		}
		if !strings.HasSuffix(src, "$") {
			continue
		}
		if r.guard == nil {
			t.Errorf("%s: anchored pattern %q without a \"not\" against line terminators", r.where, src)
			continue
		}
		tried := false
		for _, s := range samples {
			if !r.accepts(s) {
				continue
			}
			tried = true
			for _, end := range terminators {
				v := s + end
				goSays := r.accepts(v)
				if py := r.readAs(python, v); py != goSays {
					t.Errorf("%s: %q: Python's $ would say %v, Go's %v", r.where, v, py, goSays)
				}
				if j := r.readAs(java, v); j != goSays {
					t.Errorf("%s: %q: Java's $ would say %v, Go's %v", r.where, v, j, goSays)
				}
			}
		}
		if !tried {
			t.Errorf("%s: no sample value matches %q: add one", r.where, src)
		}
	}
}

// unportable says what in a pattern engines read differently, or "".
func unportable(p string) string {
	inClass := false
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '[' && inClass, strings.HasPrefix(p[i:], "&&") && inClass:
			return "[ or && inside a class: Java reads a nested class or an intersection"
		case p[i] == '[':
			inClass = true
		case p[i] == ']' && inClass:
			inClass = false
		case p[i] == '.' && !inClass:
			return "an unescaped . outside a class: engines differ on the line terminators it skips"
		case p[i] == '\\' && i+1 < len(p):
			i++
			switch c := p[i]; {
			case c == 'x':
				if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
					return `\x without two hex digits (\x{...} is not Python's or JavaScript's)`
				}
				i += 2
			case strings.IndexByte(`\.^$|?*+()[]{}/-nrt`, c) >= 0:
			default:
				return fmt.Sprintf(`\%c: engines read it differently (\d \w \s over Unicode or ASCII) or not at all`, c)
			}
		case strings.HasPrefix(p[i:], "(?") && !strings.HasPrefix(p[i:], "(?:"):
			return "(? other than (?: : lookaround and flags are not in every engine"
		}
	}
	return ""
}

func isHex(c byte) bool { return strings.IndexByte("0123456789abcdefABCDEF", c) >= 0 }

// field returns the schema at path (property names, and "oneOf/<i>" or "items") in
// the generated file.
func field(t *testing.T, files map[string]map[string]any, file string, path ...string) stringRule {
	t.Helper()
	var v any = files[file]
	for _, p := range path {
		m, _ := v.(map[string]any)
		switch {
		case p == "items":
			v = m["items"]
		case strings.HasPrefix(p, "oneOf/"):
			var i int
			fmt.Sscanf(p, "oneOf/%d", &i)
			v = m["oneOf"].([]any)[i]
		default:
			v = m["properties"].(map[string]any)[p]
		}
	}
	m, _ := v.(map[string]any)
	p, _ := m["pattern"].(string)
	g, _ := m["not"].(map[string]any)["pattern"].(string)
	if p == "" || g == "" {
		t.Fatalf("%s %v: no pattern and guard", file, path)
	}
	return stringRule{where: file + " " + strings.Join(path, "."), pattern: regexp.MustCompile(p), guard: regexp.MustCompile(g)}
}

// TestPatternsAreTheWorkersRules puts characters inside and at the end of each kind
// of value the patterns check, and compares the schema's verdict with the worker's
// (Decode): the classes spelled out in schema.go (whitespace, controls) must be the
// worker's own. The characters: Latin, and every space, control, format character and
// decimal digit of the Basic Multilingual Plane (where \s and \d differ between
// engines), and a few beyond it.
func TestPatternsAreTheWorkersRules(t *testing.T) {
	files := generated(t)
	const ks = "credential.keystore.set.json"
	cases := []struct {
		rule  stringRule
		value func(c string) string
		cmd   func(v string) (project, body string)
	}{
		{field(t, files, ks, "id"), func(c string) string { return "rot" + c + "1" },
			func(v string) (string, string) { return "MyProject", envelope("id", v) }},
		{field(t, files, ks, "project"), func(c string) string { return "My" + c + "Project" },
			func(v string) (string, string) { return v, envelope("project", v) }},
		{field(t, files, ks, "replyTo"), func(c string) string { return "_INBOX.MyProject.r" + c + "1" },
			func(v string) (string, string) { return "MyProject", envelope("replyTo", v) }},
		{field(t, files, ks, "params", "username"), func(c string) string { return "api" + c + "user" },
			func(v string) (string, string) { return "MyProject", params("username", v) }},
		{field(t, files, "keystore.create.json", "params", "keyStoreEnvironmentList", "items", "file", "oneOf/0"),
			func(c string) string { return "QUJD" + c },
			func(v string) (string, string) { return "MyProject", file(v) }},
	}
	runes := []rune{0x1f600, 0x1d7d8, 0xe0001, 0x10ffff}
	for r := rune(0); r <= 0xffff; r++ {
		if r < 0x250 || unicode.IsSpace(r) || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Z, unicode.Nd) {
			runes = append(runes, r)
		}
	}
	for _, tc := range cases {
		for _, r := range runes {
			c := string(r)
			for _, v := range []string{tc.value(c), tc.value("") + c} {
				project, body := tc.cmd(v)
				typ := "credential.keystore.set"
				if strings.Contains(body, "keyStoreEnvironmentList") {
					typ = "keystore.create"
				}
				_, err := messages.Decode(project, typ, []byte(body))
				if worker, schema := err == nil, tc.rule.accepts(v); worker != schema {
					t.Errorf("%s: %q (U+%04X): worker says %v (%v), schema %v", tc.rule.where, v, r, worker, err, schema)
				}
			}
		}
	}
}

// envelope, params and file are a valid command with one value set.
func envelope(name, value string) string {
	return command(map[string]any{"id": "rot-1", name: value, "params": map[string]any{"username": "api-user", "keystoreName": "client-2026"}})
}

func params(name, value string) string {
	return command(map[string]any{"id": "rot-1", "params": map[string]any{"username": "api-user", "keystoreName": "client-2026", name: value}})
}

func file(value string) string {
	env := map[string]any{"environmentName": "production", "file": value, "password": "changeit", "keyStoreType": "PKCS12"}
	return command(map[string]any{"id": "rot-1", "params": map[string]any{"name": "trust-2027", "keyStoreEnvironmentList": []any{env}}})
}

func command(v map[string]any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestNotAfterPatternIsRFC3339AsGoReadsIt compares the notAfter pattern with
// time.Parse(time.RFC3339), which the worker uses, over dates of every month of years
// with and without 29 February, and over times and offsets.
func TestNotAfterPatternIsRFC3339AsGoReadsIt(t *testing.T) {
	rule := field(t, generated(t), "keystore.delete.json", "notAfter")
	var values []string
	for _, y := range []string{"0000", "0001", "0004", "0100", "0400", "1900", "1996", "2000", "2024", "2025", "2026", "2100", "2400", "9999"} {
		for m := 0; m <= 13; m++ {
			for d := 0; d <= 32; d++ {
				values = append(values, fmt.Sprintf("%s-%02d-%02dT12:00:00Z", y, m, d))
			}
		}
	}
	for _, h := range []string{"00", "09", "23", "24", "25"} {
		for _, m := range []string{"00", "59", "60"} {
			for _, s := range []string{"00", "59", "60"} {
				for _, frac := range []string{"", ".5", ".123456789012", "."} {
					for _, zone := range []string{"Z", "+00:00", "-00:00", "+05:30", "-23:59", "+0100", "z", ""} {
						values = append(values, "2026-11-22T"+h+":"+m+":"+s+frac+zone)
					}
				}
			}
		}
	}
	values = append(values, "2026-11-22t12:00:00Z", "2026-11-22 12:00:00Z", "2026-1-22T12:00:00Z", "+2026-11-22T12:00:00Z",
		"2026-11-22T12:00Z", "2026-11-22T12:00:00.\uff15Z", "2026-11-22T12:00:0\u0663Z")
	for _, v := range values {
		_, err := time.Parse(time.RFC3339, v)
		if worker, schema := err == nil, rule.accepts(v); worker != schema {
			t.Errorf("%q: worker says %v (%v), schema %v", v, worker, err, schema)
		}
	}
	// Go takes these, RFC 3339 does not: the schema keeps to RFC 3339.
	for _, v := range []string{"2026-11-22T12:00:00,5Z", "2026-11-22T12:00:00+24:00", "2026-11-22T12:00:00+23:60"} {
		if _, err := time.Parse(time.RFC3339, v); err != nil || rule.accepts(v) {
			t.Errorf("%q: worker error %v, schema accepts %v: want Go's leniency and the schema's refusal", v, err, rule.accepts(v))
		}
	}
}
