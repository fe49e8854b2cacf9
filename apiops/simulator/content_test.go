package simulator_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

// TestListKeystores: GET keystores/ lists every keystore of the project in
// name order, each as GET keystores/{name}/ shows it, with a resultCount.
func TestListKeystores(t *testing.T) {
	t.Parallel()
	names := []string{"client-2025", "client-2026", "legacy-2019", "trust-2025", "trust-2026"}
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			_, ts := startIn(t, d)
			list := call(t, ts, "GET", keystores, "")
			var body map[string]json.RawMessage
			if err := json.Unmarshal([]byte(list.body), &body); err != nil || list.status != 200 {
				t.Fatalf("%d %s", list.status, list.body)
			}
			var items []json.RawMessage
			var count int
			_ = json.Unmarshal(body["resultList"], &items)
			_ = json.Unmarshal(body["resultCount"], &count)
			if len(items) != len(names) || count != len(names) {
				t.Fatalf("%d items, resultCount %d: %s", len(items), count, list.body)
			}
			for i, name := range names {
				one := call(t, ts, "GET", keystores+name+"/", "")
				var single struct{ ResultList []json.RawMessage }
				if err := json.Unmarshal([]byte(one.body), &single); err != nil || len(single.ResultList) != 1 {
					t.Fatalf("GET %s: %s", name, one.body)
				}
				// The mixed dialect's sealed values are random per answer.
				if d != mixedD && !bytes.Equal(items[i], single.ResultList[0]) {
					t.Errorf("item %d = %s\nGET %s = %s", i, items[i], name, single.ResultList[0])
				}
				if !strings.Contains(string(items[i]), `"name":"`+name+`"`) {
					t.Errorf("item %d = %s, want %s", i, items[i], name)
				}
			}
			delete(body, "resultList")
			delete(body, "resultCount")
			envelope := map[simulator.Dialect]string{seedD: `{"success":true}`}[d]
			if envelope == "" {
				envelope = `{"status":"SUCCESS"}`
			}
			if got, _ := json.Marshal(body); string(got) != envelope {
				t.Errorf("envelope %s, want %s", got, envelope)
			}
		})
	}
}

// TestExportKeystore: export-file answers a seeded keystore's generated
// PKCS12 file, which opens with the seed's password and holds CN=<name>
// valid until expiresInDays after the simulator's creation; and a created
// keystore's file as it was sent.
func TestExportKeystore(t *testing.T) {
	t.Parallel()
	seed := loadSeed(t)
	project := seed.Projects["MyProject"]
	project.KeystorePasswords = map[string]string{"trust-2025": "trust-pw"}
	seed.Projects["MyProject"] = project
	created := time.Now()
	sim, ts := serve(t, seed)
	export := func(name, env string) []byte {
		t.Helper()
		res := call(t, ts, "GET", keystores+name+"/export-file/?environmentName="+env, "")
		if res.status != 200 || res.header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("export %s: %d %s %s", name, res.status, res.header.Get("Content-Type"), res.body)
		}
		return []byte(res.body)
	}
	wantValidity := func(name string, cert *x509.Certificate, days int) {
		t.Helper()
		notAfter := created.AddDate(0, 0, days)
		if cert.Subject.CommonName != name || cert.NotAfter.Sub(notAfter).Abs() > 2*time.Second || !cert.NotBefore.Before(cert.NotAfter) {
			t.Errorf("%s: CN=%s valid %s to %s, want CN=%s until %s", name, cert.Subject.CommonName, cert.NotBefore, cert.NotAfter, name, notAfter)
		}
	}

	key, cert, _, err := pkcs12.DecodeChain(export("client-2025", "staging"), "changeit")
	if err != nil || key == nil {
		t.Fatalf("client-2025: %v", err)
	}
	wantValidity("client-2025", cert, 12)
	if cert.NotBefore.Sub(created.AddDate(0, 0, -30)).Abs() > 2*time.Second {
		t.Errorf("client-2025 NotBefore %s, want 30 days before %s", cert.NotBefore, created)
	}
	trusted, err := pkcs12.DecodeTrustStore(export("trust-2025", "production"), "trust-pw")
	if err != nil || len(trusted) != 1 {
		t.Fatalf("trust-2025: %d certificates, %v", len(trusted), err)
	}
	wantValidity("trust-2025", trusted[0], 25)
	_, legacy, _, err := pkcs12.DecodeChain(export("legacy-2019", "production"), "changeit")
	if err != nil {
		t.Fatal(err)
	}
	wantValidity("legacy-2019", legacy, -40)
	// Content is made once: a second export is the same file.
	if !bytes.Equal(export("client-2025", "staging"), export("client-2025", "production")) {
		t.Error("the seeded file differs between exports")
	}
	for name, want := range map[string]string{"trust-2025": "trust-pw", "client-2026": "changeit"} {
		if pw, ok := sim.KeystorePassword("MyProject", name); !ok || pw != want {
			t.Errorf("KeystorePassword(%s) = %q, %v; want %q", name, pw, ok, want)
		}
	}

	// A created keystore exports what was sent, for its environments only.
	body := keystoreBody(func(ks map[string]any, envs []map[string]any) { ks["keyStoreEnvironmentList"] = envs[:1] })
	if res := call(t, ts, "POST", keystores, body); res.status != 200 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	if !bytes.Equal(export("client-2027", "production"), productionFile) {
		t.Error("the export of a created keystore is not the file sent")
	}
	if pw, ok := sim.KeystorePassword("MyProject", "client-2027"); !ok || pw != "secret" {
		t.Errorf("KeystorePassword(client-2027) = %q, %v", pw, ok)
	}

	for _, d := range simulator.Dialects() {
		sim.SetDialect(d)
		for path, text := range map[string]string{
			"client-2025/export-file/":                         "environmentName is required",
			"client-2025/export-file/?environmentName=qa":      "Environment (name: qa) was not found!",
			"nope/export-file/?environmentName=staging":        "Keystore (name: nope) is not found!",
			"client-2027/export-file/?environmentName=staging": "Keystore (name: client-2027) has no file for Environment (name: staging)!",
		} {
			wantRefusal(t, d, call(t, ts, "GET", keystores+path, ""), 400, text)
		}
	}
}

// TestSeededTruststoreIsNoKeystore: a seeded keystore named as a truststore
// holds no key, so it cannot be a credential's keystore.
func TestSeededTruststoreIsNoKeystore(t *testing.T) {
	t.Parallel()
	_, ts := start(t)
	wantError(t, call(t, ts, "PUT", creds+"api-user/keystore/trust-2026/", ""), 400, "bad_request",
		"Keystore (name: trust-2026) holds no private key for environment production: it cannot be the keystore of a credential (assign it as a truststore)")
	if res := call(t, ts, "PUT", creds+"api-user/keystore/client-2026/", ""); res.status != 200 {
		t.Errorf("client-2026: %d %s", res.status, res.body)
	}
}

// TestSeedContentFieldsAreChecked: expiresInDays and keystorePasswords must
// name the project's keystores (and certificates).
func TestSeedContentFieldsAreChecked(t *testing.T) {
	t.Parallel()
	for name, project := range map[string]string{
		"unknown expiry":   `{"environments":["p"],"keystores":["k"],"expiresInDays":{"c":3}}`,
		"unknown password": `{"environments":["p"],"keystores":["k"],"keystorePasswords":{"c":"x"}}`,
		"empty password":   `{"environments":["p"],"keystores":["k"],"keystorePasswords":{"k":""}}`,
	} {
		path := filepath.Join(t.TempDir(), "seed.json")
		if err := os.WriteFile(path, []byte(`{"token":"t","projects":{"P":`+project+`}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := simulator.LoadSeed(path); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}
