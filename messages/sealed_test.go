package messages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

func readSealedExample(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("../testdata/sealed/keystore.create.sealed.json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestSealedValuesStaySealed: without an opener, sealed secrets are checked for form,
// kept sealed through Encode, and kept by RedactSecrets, which redacts only plaintext.
func TestSealedValuesStaySealed(t *testing.T) {
	data := readSealedExample(t)
	cmd, err := messages.Decode("MyProject", "keystore.create", data)
	if err != nil {
		t.Fatal(err)
	}
	env := cmd.Params.(*messages.KeystoreCreate).KeyStoreEnvironmentList[0]
	if _, ok := env.Password.Sealed(); !ok || env.Password.Reveal() != "" {
		t.Fatal("the password is not kept sealed")
	}
	wire, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := env.Password.Sealed()
	if !bytes.Contains(wire, []byte(sealed.Box)) {
		t.Errorf("Encode lost the sealed password: %s", wire)
	}
	if out, redacted := messages.RedactSecrets(data); redacted || !bytes.Equal(out, data) {
		t.Errorf("RedactSecrets changed sealed values: %s", out)
	}
	plain, _ := os.ReadFile("../testdata/commands/keystore.create.json")
	if _, redacted := messages.RedactSecrets(plain); !redacted {
		t.Error("RedactSecrets kept plaintext")
	}
}

// TestSealedValueErrorsNameTheirPart: a malformed sealed value is rejected at the part
// that is wrong; a plaintext one under RequireSealed, and a sealed one without an
// opener that can open it, at the secret.
func TestSealedValueErrorsNameTheirPart(t *testing.T) {
	var example map[string]any
	if err := json.Unmarshal(readSealedExample(t), &example); err != nil {
		t.Fatal(err)
	}
	good := example["params"].(map[string]any)["keyStoreEnvironmentList"].([]any)[0].(map[string]any)["password"].(map[string]any)
	with := func(k string, v any) map[string]any {
		out := map[string]any{}
		for key, val := range good {
			out[key] = val
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	const at = "params.keyStoreEnvironmentList[0].password"
	for _, tc := range []struct {
		name     string
		password any
		opts     messages.DecodeOptions
		field    string
		message  string
	}{
		{"box not base64", with("sealed", "not base64!"), messages.DecodeOptions{}, at + ".sealed", "standard base64"},
		{"box too short", with("sealed", "eGt2MQ=="), messages.DecodeOptions{}, at + ".sealed", "xkv1"},
		{"no box", with("sealed", nil), messages.DecodeOptions{}, at + ".sealed", "is required"},
		{"for not a key", with("for", "SXAB"), messages.DecodeOptions{}, at + ".for", "public curve key"},
		{"no sender", with("from", nil), messages.DecodeOptions{}, at + ".from", "is required"},
		{"unknown part", with("note", "x"), messages.DecodeOptions{}, at + ".note", "not a known field"},
		{"a number", 42, messages.DecodeOptions{}, at, "a string, or a sealed value"},
		{"no opener", good, messages.DecodeOptions{Opener: failingOpener{}}, "params.keyStoreEnvironmentList[0].file", "cannot be opened: no keys"},
		{"plaintext when sealed is required", "changeit", messages.DecodeOptions{RequireSealed: true}, at, "must be sealed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cmd map[string]any
			_ = json.Unmarshal(readSealedExample(t), &cmd)
			cmd["params"].(map[string]any)["keyStoreEnvironmentList"].([]any)[0].(map[string]any)["password"] = tc.password
			data, _ := json.Marshal(cmd)
			_, err := messages.DecodeWith("MyProject", "keystore.create", data, tc.opts)
			var e *messages.Error
			if !errors.As(err, &e) || e.Field != tc.field || !strings.Contains(e.Message, tc.message) {
				t.Fatalf("error %v, want %s saying %q", err, tc.field, tc.message)
			}
		})
	}
}

type failingOpener struct{}

func (failingOpener) Open(messages.Sealed) (messages.SealedContent, error) {
	return messages.SealedContent{}, errors.New("no keys")
}

// TestOpenedValuesAreValidatedAsPlaintext: an opened value meets the rules a plaintext
// one does, emptiness included; and a request is never built from an unopened one.
func TestOpenedValuesAreValidatedAsPlaintext(t *testing.T) {
	keys, err := seal.LoadDir("../testdata/sealed/keys")
	if err != nil {
		t.Fatal(err)
	}
	var cmd map[string]any
	_ = json.Unmarshal(readSealedExample(t), &cmd)
	env := cmd["params"].(map[string]any)["keyStoreEnvironmentList"].([]any)[0].(map[string]any)
	for field, value := range map[string]string{"password": "", "file": "not base64!"} {
		sealed, err := seal.Seal(keys.Current(), messages.SealedContent{Project: "MyProject", Field: field, Value: value})
		if err != nil {
			t.Fatal(err)
		}
		saved := env[field]
		env[field] = sealed
		data, _ := json.Marshal(cmd)
		env[field] = saved
		_, err = messages.DecodeWith("MyProject", "keystore.create", data, messages.DecodeOptions{Opener: keys})
		var e *messages.Error
		if !errors.As(err, &e) || e.Field != "params.keyStoreEnvironmentList[0]."+field {
			t.Errorf("sealed %s %q: error %v, want one at the field", field, value, err)
		}
	}

	unopened, err := messages.Decode("MyProject", "keystore.create", readSealedExample(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("APIRequest built a request from unopened sealed secrets")
		}
	}()
	unopened.APIRequest()
}
