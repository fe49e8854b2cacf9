package keystores

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

// environment is one keyStoreEnvironmentList entry as JSON.
func environment(name string, file []byte, kind, password string) map[string]any {
	return map[string]any{"environmentName": name, "file": base64.StdEncoding.EncodeToString(file), "password": password, "keyStoreType": kind}
}

func decodeLine(t *testing.T, line map[string]any) *messages.Command {
	t.Helper()
	data, err := json.Marshal(line)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := messages.DecodeLine(data)
	if err != nil {
		t.Fatalf("DecodeLine: %v", err)
	}
	return cmd
}

func keystoreCreate(name string, envs ...map[string]any) map[string]any {
	return map[string]any{"id": "c-1", "type": "keystore.create", "project": "MyProject",
		"params": map[string]any{"name": name, "keyStoreEnvironmentList": envs}}
}

func TestCheckCommandNamesTheFieldAndEnvironment(t *testing.T) {
	pki := newTestPKI(t, algECDSA, withLeafValidity(validity{time.Now().Add(-day), time.Now().Add(400 * day)}))
	p12 := mustBuild(t, pki.keyStoreInputs(t), KindPKCS12)
	trust := readFixture(t, "trust-2027.p12")
	good := environment("production", trust, KindPKCS12, fixturePassword)
	cases := []struct {
		name      string
		second    map[string]any
		wantErr   error
		wantField string
	}{
		{"wrong password", environment("staging", p12, KindPKCS12, "Wr0ng-9f1c"), ErrWrongPassword, "params.keyStoreEnvironmentList[1].password"},
		{"PKCS12 declared JKS", environment("staging", p12, KindJKS, string(testPassword)), ErrWrongType, "params.keyStoreEnvironmentList[1].keyStoreType"},
		{"random bytes", environment("staging", randomFile(), KindPKCS12, string(testPassword)), ErrNotKeystore, "params.keyStoreEnvironmentList[1].file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CheckCommand(decodeLine(t, keystoreCreate("client-2030", good, tc.second)), time.Now())
			var fileErr *FileError
			if !errors.As(err, &fileErr) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("CheckCommand() error = %v, want a *FileError that is %v", err, tc.wantErr)
			}
			if fileErr.Field != tc.wantField || fileErr.Environment != "staging" {
				t.Errorf("field %q, environment %q; want %q, staging", fileErr.Field, fileErr.Environment, tc.wantField)
			}
			rejection := fileErr.Rejection()
			if rejection.Code != messages.CodeInvalidCommand || rejection.Field != tc.wantField || !strings.Contains(rejection.Message, `"staging"`) {
				t.Errorf("Rejection() = %+v", rejection)
			}
		})
	}
	if w, err := CheckCommand(decodeLine(t, keystoreCreate("client-2030", good, environment("staging", p12, KindPKCS12, string(testPassword)))), time.Now()); err != nil || len(w) != 0 {
		t.Errorf("valid files: warnings %q, error %v", w, err)
	}
}

// TestCheckCommandKeyNeededWhereAssignedAsKeystore: a plan that assigns the keystore
// it creates as a credential's keystore, or as a proxy's mTLS keystore, needs a file
// with a private key; as a truststore it does not.
func TestCheckCommandKeyNeededWhereAssignedAsKeystore(t *testing.T) {
	trust := environment("production", readFixture(t, "trust-2027.jks"), KindJKS, fixturePassword)
	plan := func(uses ...map[string]any) map[string]any {
		steps := []any{map[string]any{"type": "keystore.create", "params": map[string]any{"name": "new-2030", "keyStoreEnvironmentList": []any{trust}}}}
		for _, use := range uses {
			steps = append(steps, use)
		}
		return map[string]any{"id": "p-1", "type": "plan", "project": "MyProject", "steps": steps}
	}
	step := func(typ string, params map[string]any) map[string]any {
		return map[string]any{"type": typ, "params": params}
	}
	needsKey := map[string]map[string]any{
		"credential.keystore.set":        step("credential.keystore.set", map[string]any{"username": "partner-a", "keystoreName": "new-2030"}),
		"proxy.mtls.update keyStoreName": step("proxy.mtls.update", map[string]any{"apiProxyName": "MyAPI", "keyStoreName": "new-2030"}),
	}
	for name, use := range needsKey {
		_, err := CheckCommand(decodeLine(t, plan(use)), time.Now())
		var fileErr *FileError
		if !errors.As(err, &fileErr) || !errors.Is(err, ErrNoPrivateKey) || fileErr.Field != "steps[0].params.keyStoreEnvironmentList[0].file" {
			t.Errorf("%s: error %v, want %v naming steps[0]…file", name, err, ErrNoPrivateKey)
		}
	}
	asTruststore := []map[string]any{
		step("credential.truststore.set", map[string]any{"username": "partner-a", "keystoreName": "new-2030"}),
		step("proxy.mtls.update", map[string]any{"apiProxyName": "MyAPI", "trustStoreName": "new-2030"}),
		step("credential.keystore.set", map[string]any{"username": "partner-a", "keystoreName": "another"}),
	}
	if _, err := CheckCommand(decodeLine(t, plan(asTruststore...)), time.Now()); err != nil {
		t.Errorf("assigned as a truststore: error %v", err)
	}
	// A rename: the keystore is assigned by its new name.
	rename := map[string]any{"id": "p-2", "type": "plan", "project": "MyProject", "steps": []any{
		step("credential.truststore.set", map[string]any{"username": "partner-a", "keystoreName": "trust-2025"}),
		step("keystore.update", map[string]any{"keystoreName": "old", "name": "renamed", "keyStoreEnvironmentList": []any{trust}}),
		step("credential.keystore.set", map[string]any{"username": "partner-a", "keystoreName": "renamed"}),
	}}
	if _, err := CheckCommand(decodeLine(t, rename), time.Now()); !errors.Is(err, ErrNoPrivateKey) || !strings.HasPrefix(err.(*FileError).Field, "steps[1].") {
		t.Errorf("renamed keystore assigned as one: error %v, want %v naming steps[1]", err, ErrNoPrivateKey)
	}
}

func TestCheckCommandWarnsOfExpiry(t *testing.T) {
	now := time.Now()
	pki := newTestPKI(t, algECDSA, withLeafValidity(validity{now.Add(-300 * day), now.Add(10 * day)}),
		withIntermediateValidity(currentlyValidFrom(now)), withRootValidity(currentlyValidFrom(now)))
	jks := mustBuild(t, pki.keyStoreInputs(t), KindJKS)
	warnings, err := CheckCommand(decodeLine(t, keystoreCreate("client-2030", environment("production", jks, KindJKS, string(testPassword)))), now)
	if err != nil || len(warnings) != 1 || !strings.HasPrefix(warnings[0], `params.keyStoreEnvironmentList[0].file (environment "production"): certificate 1 (`) ||
		!strings.Contains(warnings[0], "expires in") {
		t.Fatalf("warnings %q, error %v; want one naming the field, environment and certificate", warnings, err)
	}
}

func currentlyValidFrom(now time.Time) validity { return validity{now.Add(-day), now.Add(900 * day)} }

// TestCheckCommandSkipsSealedSecrets: apiopsctl cannot open sealed values; the worker
// checks them once it has.
func TestCheckCommandSkipsSealedSecrets(t *testing.T) {
	sealed := messages.NewSealedSecret(messages.Sealed{Box: "eGt2MQ==", For: "X", From: "X"})
	cmd := &messages.Command{ID: "c", Type: "keystore.create", Project: "MyProject", Params: &messages.KeystoreCreate{Name: "k",
		KeyStoreEnvironmentList: []messages.KeyStoreEnvironment{
			{EnvironmentName: "production", File: sealed, Password: messages.NewSecret("p"), KeyStoreType: KindPKCS12},
			{EnvironmentName: "staging", File: messages.NewSecret(base64.StdEncoding.EncodeToString(randomFile()[:64])), Password: sealed, KeyStoreType: KindPKCS12},
		}}}
	if w, err := CheckCommand(cmd, time.Now()); err != nil || len(w) != 0 {
		t.Fatalf("warnings %q, error %v; want sealed environments skipped", w, err)
	}
}

// TestCheckCommandCoversEveryTypeWithFiles: a params type that carries keystore files
// and that keystoreFiles does not know would let its files through unchecked.
func TestCheckCommandCoversEveryTypeWithFiles(t *testing.T) {
	envType := reflect.TypeFor[messages.KeyStoreEnvironment]()
	for _, ct := range messages.Types() {
		params := ct.NewParams()
		v := reflect.ValueOf(params).Elem()
		carries := false
		for i := range v.NumField() {
			if f := v.Field(i); f.Kind() == reflect.Slice && f.Type().Elem() == envType {
				carries = true
				f.Set(reflect.ValueOf([]messages.KeyStoreEnvironment{{EnvironmentName: "production",
					File: messages.NewSecret(base64.StdEncoding.EncodeToString([]byte("not a keystore"))), Password: messages.NewSecret("p"), KeyStoreType: KindJKS}}))
			}
		}
		if !carries {
			continue
		}
		cmd := &messages.Command{ID: "c", Type: ct.Name, Project: "MyProject", Params: params}
		if _, err := CheckCommand(cmd, time.Now()); !errors.Is(err, ErrNotKeystore) {
			t.Errorf("%s carries keystore files, but CheckCommand does not open them (error %v)", ct.Name, err)
		}
	}
}

// TestSampleCommandsPass: the samples in testdata (make validate-samples, the demo)
// hold keystores that open.
func TestSampleCommandsPass(t *testing.T) {
	files, err := filepath.Glob("../testdata/commands/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	files = append(files, "../testdata/rotation.jsonl", "../testdata/plans/rotation.json", "../testdata/plans/rotation-fails.json")
	checked := 0
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			if strings.TrimSpace(line) == "" {
				continue
			}
			cmd, err := messages.DecodeLine([]byte(line))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if w, err := CheckCommand(cmd, time.Now()); err != nil || len(w) != 0 {
				t.Errorf("%s: command %s: warnings %q, error %v", name, cmd.ID, w, err)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Fatalf("only %d sample commands checked", checked)
	}
}
