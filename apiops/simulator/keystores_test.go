package simulator_test

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
)

// Real keystores for the bodies, since the simulator opens each file with its
// password, as APIOps does; their passwords are the bodies' own.
var (
	productionFile = keystorestest.File(keystorestest.Spec{Password: "secret"})
	stagingFile    = keystorestest.File(keystorestest.Spec{Kind: "JKS", Password: "secret2"})
	updateFile     = keystorestest.File(keystorestest.Spec{Kind: "JKS", Password: "pw", TrustStore: true})
)

func base64Of(file []byte) string { return base64.StdEncoding.EncodeToString(file) }

// TestKeystoresThatDoNotOpenAreRefused: a file that does not open with its password
// and type gets a 400 with Java's words in every dialect, and nothing is stored.
func TestKeystoresThatDoNotOpenAreRefused(t *testing.T) {
	t.Parallel()
	random := make([]byte, 700<<10)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	random[0] = 0 // neither format starts so
	cases := []struct {
		name, file, password, kind, text string
	}{
		{"wrong password", base64Of(productionFile), "not-secret", "PKCS12", "keystore password was incorrect"},
		{"JKS with the wrong password", base64Of(stagingFile), "not-secret2", "JKS", "keystore password was incorrect"},
		{"PKCS12 declared JKS", base64Of(productionFile), "secret", "JKS", "Invalid keystore format: not a JKS keystore"},
		{"JKS declared PKCS12", base64Of(stagingFile), "secret2", "PKCS12", "Invalid keystore format: not a PKCS12 keystore"},
		{"700 KB of random bytes", base64Of(random), "secret", "PKCS12", "Invalid keystore format"},
	}
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, d)
			for _, tc := range cases {
				body := keystoreBody(func(_ map[string]any, envs []map[string]any) {
					envs[1]["file"], envs[1]["password"], envs[1]["keyStoreType"] = tc.file, tc.password, tc.kind
				})
				res := call(t, ts, "POST", keystores, body)
				text := "Invalid keystore file for environment staging: " + tc.text
				if d == seedD {
					wantError(t, res, 400, "bad_request", text)
				} else {
					wantJSON(t, res, 400, `{"status":"FAILURE","resultMessage":"`+text+`"}`)
				}
				if strings.Contains(res.body, tc.password) {
					t.Errorf("%s: the answer quotes the password: %s", tc.name, res.body)
				}
				if _, ok := sim.Keystore("MyProject", "client-2027"); ok {
					t.Fatalf("%s: the keystore was created", tc.name)
				}
			}
		})
	}
}

// TestKeystoresOutOfDateAreRefused: a certificate expired or not yet valid makes the
// file refused, over HTTP in every dialect; one that expires within 30 days is taken
// (APIOps answers carry no warnings).
func TestKeystoresOutOfDateAreRefused(t *testing.T) {
	t.Parallel()
	now := time.Now()
	const day = 24 * time.Hour
	expired := keystorestest.File(keystorestest.Spec{Password: "secret2", NotBefore: now.Add(-400 * day), NotAfter: now.Add(-day)})
	notYet := keystorestest.File(keystorestest.Spec{Password: "secret2", NotBefore: now.Add(day), NotAfter: now.Add(400 * day)})
	expiring := keystorestest.File(keystorestest.Spec{Password: "secret2", NotBefore: now.Add(-300 * day), NotAfter: now.Add(10 * day)})
	cases := []struct {
		name string
		file []byte
		text string // "" for created
	}{
		{"expired", expired, "Invalid keystore file for environment staging: certificate 1 (CN=keystorestest,O=apiops test) has expired: NotAfter: "},
		{"not yet valid", notYet, "Invalid keystore file for environment staging: certificate 1 (CN=keystorestest,O=apiops test) is not yet valid: NotBefore: "},
		{"expiring within 30 days", expiring, ""},
	}
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, d)
			for _, tc := range cases {
				body := keystoreBody(func(_ map[string]any, envs []map[string]any) {
					envs[1]["file"], envs[1]["keyStoreType"] = base64Of(tc.file), "PKCS12"
				})
				res := call(t, ts, "POST", keystores, body)
				_, created := sim.Keystore("MyProject", "client-2027")
				switch {
				case tc.text == "" && (res.status != 200 || !created):
					t.Errorf("%s: %d %s, want the keystore created", tc.name, res.status, res.body)
				case tc.text != "" && (res.status != 400 || !strings.Contains(res.body, tc.text) || created):
					t.Errorf("%s: %d %s, want 400 saying %q", tc.name, res.status, res.body, tc.text)
				}
			}
		})
	}
}

// TestKeylessKeystoresAreNotAssignedAsKeystores: a keystore whose files hold no
// private key may be a credential's truststore or a proxy's mTLS truststore, not a
// credential's keystore or a proxy's mTLS keystore; one with a key may be either.
func TestKeylessKeystoresAreNotAssignedAsKeystores(t *testing.T) {
	t.Parallel()
	trustP12 := keystorestest.File(keystorestest.Spec{Password: "secret", TrustStore: true})
	const mtls = myProject + "apiProxies/MyAPI/settings/mtls/"
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, d)
			wantRefused := func(res response, text string) {
				t.Helper()
				if d == seedD {
					wantError(t, res, 400, "bad_request", text)
				} else {
					wantJSON(t, res, 400, `{"status":"FAILURE","resultMessage":"`+text+`"}`)
				}
			}
			wantOK := func(what string, res response) {
				t.Helper()
				if res.status != 200 {
					t.Errorf("%s: %d %s, want 200", what, res.status, res.body)
				}
			}
			trustBody := keystoreBody(func(ks map[string]any, envs []map[string]any) {
				ks["name"] = "trust-only"
				envs[0]["file"], envs[0]["password"] = base64Of(trustP12), "secret"
				envs[1]["file"], envs[1]["password"] = base64Of(updateFile), "pw"
			})
			wantOK("create trust-only", call(t, ts, "POST", keystores, trustBody))
			wantOK("create client-2027", call(t, ts, "POST", keystores, keystoreBody(nil)))
			ref := func(field, name string) string {
				if d == openapiD || d == mixedD {
					return `{"` + field + `Name":"` + name + `"}`
				}
				id, ok := sim.KeystoreID("MyProject", name)
				if !ok {
					t.Fatalf("no id for %s", name)
				}
				return `{"` + field + `Id":"` + id + `"}`
			}

			wantRefused(call(t, ts, "PUT", creds+"partner-b/keystore/trust-only/", ""),
				"Keystore (name: trust-only) holds no private key for environment production: it cannot be the keystore of a credential (assign it as a truststore)")
			if c, _ := sim.Credential("MyProject", "partner-b"); c.Keystore != "" {
				t.Errorf("partner-b's keystore was set to %q", c.Keystore)
			}
			wantOK("credential truststore", call(t, ts, "PUT", creds+"partner-b/truststore/trust-only/", ""))
			wantOK("credential keystore with a key", call(t, ts, "PUT", creds+"partner-b/keystore/client-2027/", ""))

			wantRefused(call(t, ts, "PATCH", mtls, ref("keyStore", "trust-only")),
				"Keystore (name: trust-only) holds no private key for environment production: it cannot be an API proxy's mTLS keystore (assign it as a truststore)")
			if got, _ := sim.Proxy("MyProject", "MyAPI"); got.KeyStoreName != "" || got.KeyStoreID != "" {
				t.Errorf("the refused PATCH changed the proxy: %+v", got)
			}
			wantOK("mTLS truststore", call(t, ts, "PATCH", mtls, ref("trustStore", "trust-only")))
			wantOK("mTLS keystore with a key", call(t, ts, "PATCH", mtls, ref("keyStore", "client-2027")))
		})
	}
}
