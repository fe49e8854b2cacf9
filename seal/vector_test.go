package seal_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

// The test vectors in testdata/sealed are made once, with
//
//	go test ./seal -run TestVectors -update-vectors
//
// which keeps the key in keys/ (making it if there is none) and seals afresh: sealing
// is randomized, so the tests check only that what is committed opens.
var (
	updateVectors = flag.Bool("update-vectors", false, "write the test vectors in testdata/sealed again")
	writeOnce     sync.Once
)

const (
	vectorDir       = "../testdata/sealed"
	vectorKeys      = vectorDir + "/keys"
	vectorSeed      = vectorKeys + "/test-only-do-not-use.xk"
	vectorFile      = vectorDir + "/vector.json"
	exampleFile     = "../testdata/commands/keystore.create.json"
	sealedExample   = vectorDir + "/keystore.create.sealed.json"
	vectorTestOnly  = "TEST ONLY: the seed in keys/ is public; never seal a real secret for this key"
	exampleProject  = "MyProject"
	exampleTypeName = "keystore.create"
)

type vector struct {
	Comment   string                 `json:"comment"`
	SeedFile  string                 `json:"seedFile"`
	Recipient string                 `json:"recipient"`
	Content   messages.SealedContent `json:"content"`
	Sealed    messages.Sealed        `json:"sealed"`
}

func TestVectors(t *testing.T) {
	if *updateVectors {
		writeOnce.Do(func() { writeVectors(t) })
	}
	ring, err := seal.LoadDir(vectorKeys)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(vectorFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if v.Recipient != ring.Current() || v.Sealed.For != v.Recipient {
		t.Fatalf("vector for %s (sealed for %s), the test key is %s", v.Recipient, v.Sealed.For, ring.Current())
	}
	got, err := ring.Open(v.Sealed)
	if err != nil || got != v.Content {
		t.Fatalf("the vector opens to %+v, %v; want %+v", got, err, v.Content)
	}
}

func TestSealedExampleCommand(t *testing.T) {
	if *updateVectors {
		writeOnce.Do(func() { writeVectors(t) })
	}
	ring, err := seal.LoadDir(vectorKeys)
	if err != nil {
		t.Fatal(err)
	}
	plainData, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	sealedData, err := os.ReadFile(sealedExample)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := messages.Decode(exampleProject, exampleTypeName, plainData)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range secretsOf(t, plain) {
		if bytes.Contains(sealedData, []byte(secret)) {
			t.Errorf("the sealed example shows a secret")
		}
	}

	// Without an opener, sealed values are checked for form and stay sealed.
	formOnly, err := messages.Decode(exampleProject, exampleTypeName, sealedData)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got := secretsOf(t, formOnly); strings.Join(got, "") != "" {
		t.Errorf("values known without opening")
	}

	opened, err := messages.DecodeWith(exampleProject, exampleTypeName, sealedData, messages.DecodeOptions{Opener: ring, RequireSealed: true})
	if err != nil {
		t.Fatalf("DecodeWith: %v", err)
	}
	want, got := secretsOf(t, plain), secretsOf(t, opened)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the opened secrets differ from the plaintext example's")
	}
	if a, b := opened.APIRequest(), plain.APIRequest(); a.String() != b.String() || !bytes.Equal(a.Body, b.Body) {
		t.Errorf("the APIOps request differs: %v and %v", a, b)
	}
	// Encoded again, it stays sealed.
	again, err := opened.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range want {
		if bytes.Contains(again, []byte(secret)) {
			t.Error("the opened command encodes a secret in plaintext")
		}
	}

	// A sealed password moved into the file field is refused: it is bound to its field.
	var raw map[string]any
	if err := json.Unmarshal(sealedData, &raw); err != nil {
		t.Fatal(err)
	}
	env := raw["params"].(map[string]any)["keyStoreEnvironmentList"].([]any)[0].(map[string]any)
	env["file"] = env["password"]
	moved, _ := json.Marshal(raw)
	_, err = messages.DecodeWith(exampleProject, exampleTypeName, moved, messages.DecodeOptions{Opener: ring})
	if err == nil || !strings.Contains(err.Error(), `sealed for a "password" field, not for "file"`) {
		t.Errorf("a password moved into file: %v", err)
	}
}

// secretsOf returns the values of the example's secrets, in order.
func secretsOf(t *testing.T, cmd *messages.Command) []string {
	t.Helper()
	p, ok := cmd.Params.(*messages.KeystoreCreate)
	if !ok {
		t.Fatalf("params %T", cmd.Params)
	}
	var out []string
	for _, e := range p.KeyStoreEnvironmentList {
		out = append(out, e.Password.Reveal(), e.File.Reveal())
	}
	return out
}

// writeVectors seals the vectors afresh for the test key, making the key if there is
// none.
func writeVectors(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(vectorKeys, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(vectorSeed); os.IsNotExist(err) {
		if _, err := seal.GenerateKeyFile(vectorSeed); err != nil {
			t.Fatal(err)
		}
	}
	ring, err := seal.LoadDir(vectorKeys)
	if err != nil {
		t.Fatal(err)
	}
	key := ring.Current()

	c := messages.SealedContent{Project: exampleProject, Field: "password", Value: "changeit"}
	v := vector{Comment: vectorTestOnly, SeedFile: strings.TrimPrefix(vectorSeed, vectorDir+"/"), Recipient: key, Content: c}
	if v.Sealed, err = seal.Seal(key, c); err != nil {
		t.Fatal(err)
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorFile, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}

	plainData, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := messages.Decode(exampleProject, exampleTypeName, plainData)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.SealSecrets(seal.For(key)); err != nil {
		t.Fatal(err)
	}
	sealed, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sealedExample, append(sealed, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
