package messages_test

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

// FuzzDecode checks that no input panics Decode, that every failure is a *messages.Error
// with a known code, and that every accepted command survives Encode and Decode with the
// same APIOps request. Run it with: go test ./messages -run '^$' -fuzz FuzzDecode
func FuzzDecode(f *testing.F) {
	for name, data := range exampleCommands(f) {
		f.Add("MyProject", name, data)
	}
	for _, tc := range readJSONL[invalidCase](f, "../testdata/invalid-commands.jsonl") {
		f.Add(tc.Project, tc.Type, []byte(tc.Command))
	}
	// Sealed values: opened with the test key, whose seed is public.
	f.Add("MyProject", "keystore.create", readSealedExample(f))
	if plan, err := os.ReadFile("../testdata/plans/rotation.json"); err == nil {
		f.Add("MyProject", messages.PlanType, plan)
	}
	keys, err := seal.LoadDir("../testdata/sealed/keys")
	if err != nil {
		f.Fatal(err)
	}
	codes := map[string]bool{
		messages.CodeInvalidJSON: true, messages.CodeInvalidCommand: true,
		messages.CodeUnknownType: true, messages.CodeSubjectMismatch: true,
	}
	opening := messages.DecodeOptions{Opener: keys}
	f.Fuzz(func(t *testing.T, project, typeName string, data []byte) {
		opened, openErr := messages.DecodeWith(project, typeName, data, opening)
		if openErr != nil {
			if e := (*messages.Error)(nil); !errors.As(openErr, &e) || !codes[e.Code] {
				t.Fatalf("error %v, with an opener, is not a known *messages.Error", openErr)
			}
		}
		cmd, err := messages.Decode(project, typeName, data)
		if cmd == nil {
			t.Fatal("nil command")
		}
		if err != nil {
			var e *messages.Error
			if !errors.As(err, &e) || !codes[e.Code] {
				t.Fatalf("error %v is not a known *messages.Error", err)
			}
			return
		}
		wire, err := cmd.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := messages.Decode(project, typeName, wire); err != nil {
			t.Fatalf("encoded command does not decode: %v\n%s", err, wire)
		}
		if openErr != nil {
			return // sealed values that do not open: there is no request
		}
		wire, err = opened.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := messages.DecodeWith(project, typeName, wire, opening)
		if err != nil {
			t.Fatalf("encoded command does not decode: %v\n%s", err, wire)
		}
		if plan, ok := again.Plan(); ok {
			if p, _ := opened.Plan(); len(plan.Steps) != len(p.Steps) || len(plan.OnFailure) != len(p.OnFailure) {
				t.Fatalf("round trip changed the plan:\n%s", wire)
			}
			return // a plan makes no request of its own
		}
		a, b := opened.APIRequest(), again.APIRequest()
		if a.String() != b.String() || a.Query.Encode() != b.Query.Encode() || !bytes.Equal(a.Body, b.Body) {
			t.Fatalf("round trip changed the request: %v %s / %v %s", a, a.Body, b, b.Body)
		}
	})
}
