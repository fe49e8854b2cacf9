package simulator_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

func TestLoadSeed(t *testing.T) {
	t.Parallel()
	seed := loadSeed(t)
	if seed.Token != token {
		t.Errorf("token = %q", seed.Token)
	}
	sim := simulator.New(seed)
	credentialIs("MyProject", "partner-a", partnerA(nil))(t, sim)
	credentialIs("TeamA", "svc-orders", simulator.CredentialState{})(t, sim)
	keystoreExists("admin", "shared-trust-root", true)(t, sim)
	keystoreExists("MyProject", "shared-trust-root", false)(t, sim)
	wantPayments := simulator.MTLSSettings{
		Enabled: true, KeyStoreID: "client-2025", TrustStoreID: "trust-2025",
		SupportedProtocolList: []string{"TLS_1_2", "TLS_1_3"}, HostnameVerifierType: "STRICT",
	}
	if got, ok := sim.Proxy("MyProject", "PaymentsAPI"); !ok || !reflect.DeepEqual(got, wantPayments) {
		t.Errorf("PaymentsAPI = %+v, %v", got, ok)
	}
	if got, ok := sim.Proxy("MyProject", "AssistantAPI"); !ok || got.Type != "AI" {
		t.Errorf("AssistantAPI = %+v, %v", got, ok)
	}
	if len(seed.Clients) == 0 || seed.Projects["MyProject"].Certificates == nil {
		t.Errorf("seed has no clients or no certificates: %+v", seed)
	}
	if _, ok := sim.Credential("NoSuch", "api-user"); ok {
		t.Error("credential of an unknown project exists")
	}
	if _, ok := sim.Proxy("TeamA", "MyAPI"); ok {
		t.Error("proxy of another project exists")
	}

	dir := t.TempDir()
	for name, content := range map[string]string{
		"unknown field":         `{"token":"t","projects":{"P":{"environment":["production"]}}}`,
		"bad key type":          `{"token":"t","projects":{"P":{"keys":{"k":"SYMMETRIC_KEY"}}}}`,
		"client without secret": `{"token":"t","clients":{"pipeline":""},"projects":{}}`,
		"not JSON":              `token: t`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := simulator.LoadSeed(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want an error naming the file", name, err)
		}
	}
	if _, err := simulator.LoadSeed(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestNewCopiesSeed(t *testing.T) {
	t.Parallel()
	seed := loadSeed(t)
	sim := simulator.New(seed)
	seed.Projects["MyProject"].Credentials["api-user"] = simulator.CredentialState{Truststore: "x"}
	seed.Projects["MyProject"].APIProxies["PaymentsAPI"].SupportedProtocolList[0] = "SSL_3_0"
	credentialIs("MyProject", "api-user", simulator.CredentialState{})(t, sim)

	got, _ := sim.Proxy("MyProject", "PaymentsAPI")
	if got.SupportedProtocolList[0] != "TLS_1_2" {
		t.Fatalf("seed change leaked into the simulator: %v", got.SupportedProtocolList)
	}
	got.SupportedProtocolList[0] = "SSL_3_0"
	if again, _ := sim.Proxy("MyProject", "PaymentsAPI"); again.SupportedProtocolList[0] != "TLS_1_2" {
		t.Fatalf("accessor result aliases state: %v", again.SupportedProtocolList)
	}
}

func TestRecording(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	call(t, ts, "PUT", setTruststore, "")
	call(t, ts, "PUT", keystores+"client-2026/?jwkUpdateAction=UPDATE&updateScope=SAME_PROJECT", `{"description":"d"}`)
	if _, err := send(t, ts, "Bearer wrong", "GET", "/nowhere/", ""); err != nil {
		t.Fatal(err)
	}
	call(t, ts, "GET", "/nowhere/", "")

	want := []simulator.Request{
		{Method: "PUT", Path: setTruststore, Authorized: true, Status: 200},
		{
			Method: "PUT", Path: keystores + "client-2026/", RawQuery: "jwkUpdateAction=UPDATE&updateScope=SAME_PROJECT",
			Body: []byte(`{"description":"d"}`), Authorized: true, Status: 200,
		},
		{Method: "GET", Path: "/nowhere/", Status: 401},
		{Method: "GET", Path: "/nowhere/", Authorized: true, Status: 404},
	}
	got := sim.Requests()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Requests() =\n%+v\nwant\n%+v", got, want)
	}
	got[1].Body[0] = 'X'
	if sim.Requests()[1].Body[0] != '{' {
		t.Error("Requests() result aliases the recording")
	}

	sim.ResetRequests()
	if n := len(sim.Requests()); n != 0 {
		t.Fatalf("%d requests after ResetRequests", n)
	}
	sim.SetRecording(false)
	call(t, ts, "DELETE", creds+"api-user/truststore/", "")
	if n := len(sim.Requests()); n != 0 {
		t.Fatalf("%d requests recorded while recording is off", n)
	}
	sim.SetRecording(true)
	call(t, ts, "PUT", setTruststore, "")
	wantStatuses(t, sim, 200)
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	body := `{"description":"` + strings.Repeat("x", 32<<20) + `"}`
	wantError(t, call(t, ts, "PUT", keystores+"client-2026/", body), 413, "payload_too_large", "Request body exceeds 32 MiB")
	keystoreExists("MyProject", "client-2026", true)(t, sim)
}

func TestBodyCutOff(t *testing.T) {
	t.Parallel()
	sim := simulator.New(loadSeed(t))
	req := httptest.NewRequest("PUT", keystores+"client-2026/", iotest.ErrReader(errors.New("cut off")))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, req)
	wantError(t, response{status: rec.Code, header: rec.Header(), body: rec.Body.String()},
		400, "bad_request", "Could not read the request body: cut off")
}

// TestConcurrentUse is for the race detector: requests, accessors and controls
// all at once.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	const workers, perWorker = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				user := []string{"api-user", "partner-a", "partner-b"}[(w+i)%3]
				ks := []string{"trust-2025", "trust-2026"}[i%2]
				res, err := send(t, ts, "Bearer "+token, "PUT", fmt.Sprintf("%s%s/truststore/%s/", creds, user, ks), "")
				if err != nil || res.status != http.StatusOK {
					t.Errorf("worker %d: %v %d %s", w, err, res.status, res.body)
					return
				}
				sim.Credential("MyProject", user)
				sim.SetFaults(simulator.Faults{FailEnvironments: []string{"staging"}})
			}
		})
	}
	wg.Go(func() {
		for i := range perWorker {
			sim.Requests()
			sim.SetToken(token)
			sim.SetDialect(simulator.Dialects()[i%4])
			sim.SetTokenLifetime(time.Duration(i) * time.Minute)
			sim.KeystoreID("MyProject", "trust-2026")
		}
	})
	wg.Go(func() {
		for range perWorker {
			tok := issued(t, ts)
			if res := useToken(t, ts, tok); res.status != http.StatusOK {
				t.Errorf("issued token: %d %s", res.status, res.body)
				return
			}
		}
	})
	wg.Wait()
	if n, want := len(sim.Requests()), (workers+2)*perWorker; n != want {
		t.Errorf("recorded %d requests, want %d", n, want)
	}
	if n := sim.TokensIssued(); n != perWorker {
		t.Errorf("TokensIssued = %d, want %d", n, perWorker)
	}
}

// BenchmarkServeHTTP measures the simulator alone, as load tests run it:
// recording off, no faults.
func BenchmarkServeHTTP(b *testing.B) {
	sim := simulator.New(loadSeed(b))
	sim.SetRecording(false)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("PUT", setTruststore, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		for pb.Next() {
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}
