package schema_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaOnly lists the invalid commands of testdata/ that no JSON Schema can reject,
// with why: a publisher in another language validating with the schemas alone cannot
// catch them, and the contract says so.
var schemaOnly = map[string]string{
	"body project differs from subject project":           subjectProject,
	"body project differs only in case":                   subjectProject,
	"subject project holds *":                             subjectProject,
	"subject project holds >":                             subjectProject,
	"subject project holds a space":                       subjectProject,
	"subject project is empty":                            subjectProject,
	"subject project holds .":                             subjectProject,
	"proxy.rollback without a revision outside a plan":    "a rollback's params are one schema, in a command and in a plan's onFailure, where the revision may be left out",
	"key.create with a private key that is not PEM":       "the key's content is a secret: plaintext or sealed, which only the worker opens",
	"certificate.create whose file is no PEM certificate": "the file is base64: what it holds is beyond a pattern",
}

const subjectProject = "the subject's project is not in the body: only the worker, which sees the subject, checks it"

// TestSchemasAgreeWithTheWorker runs the valid and invalid commands of testdata/
// through an independent JSON Schema validator (not the generator): every valid one
// passes its type's schema, and every invalid one the worker rejects fails it, unless
// listed in schemaOnly.
func TestSchemasAgreeWithTheWorker(t *testing.T) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	schemas := map[string]*jsonschema.Schema{}
	files, _ := filepath.Glob("*.json")
	for _, f := range files {
		name := strings.TrimSuffix(f, ".json")
		s, err := c.Compile(f)
		if err != nil {
			t.Fatalf("compile %s: %v", f, err)
		}
		schemas[name] = s
	}
	validate := func(typeName string, body []byte) error {
		s := schemas[typeName]
		if s == nil {
			return os.ErrNotExist // no schema: an unknown type
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err != nil {
			return err
		}
		return s.Validate(v)
	}

	valid, _ := filepath.Glob("../../testdata/commands/*.json")
	for _, f := range valid {
		body, _ := os.ReadFile(f)
		typeName := strings.TrimSuffix(filepath.Base(f), ".json")
		if err := validate(typeName, body); err != nil {
			t.Errorf("%s fails its schema: %v", f, err)
		}
	}
	for _, line := range lines(t, "../../testdata/rotation.jsonl") {
		var cmd struct{ Type string }
		_ = json.Unmarshal(line, &cmd)
		if err := validate(cmd.Type, line); err != nil {
			t.Errorf("rotation %s fails its schema: %v", line, err)
		}
	}
	plans, _ := filepath.Glob("../../testdata/plans/*.json")
	for _, f := range plans {
		body, _ := os.ReadFile(f)
		if err := validate("plan", body); err != nil {
			t.Errorf("%s fails the plan schema: %v", f, err)
		}
		// A plan with an invalid step fails it too.
		bad := bytes.Replace(body, []byte(`"username":`), []byte(`"userName":`), 1)
		if err := validate("plan", bad); err == nil {
			t.Errorf("%s with an unknown field in a step passes the plan schema", f)
		}
	}
	sealed, _ := os.ReadFile("../../testdata/sealed/keystore.create.sealed.json")
	if err := validate("keystore.create", sealed); err != nil {
		t.Errorf("the sealed example fails its schema: %v", err)
	}

	for _, line := range lines(t, "../../testdata/invalid-commands.jsonl") {
		var tc struct{ Name, Type, Command, Code string }
		if err := json.Unmarshal(line, &tc); err != nil {
			t.Fatal(err)
		}
		if !json.Valid([]byte(tc.Command)) {
			continue // not JSON: any parser refuses it
		}
		err := validate(tc.Type, []byte(tc.Command))
		why, listed := schemaOnly[tc.Name]
		switch {
		case err == nil && !listed:
			t.Errorf("%q (%s) passes its schema", tc.Name, tc.Code)
		case err != nil && listed:
			t.Errorf("%q is listed as beyond the schemas (%s), but they reject it", tc.Name, why)
		}
	}
}

func lines(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, bytes.Clone(line))
		}
	}
	return out
}
