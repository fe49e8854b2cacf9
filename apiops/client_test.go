package apiops_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
	"github.com/apiops-worker/apiops-worker/messages"
)

// jksFile is a JKS keystore that opens with password "p", as the simulator checks.
var jksFile = keystorestest.Base64(keystorestest.Spec{Kind: "JKS", Password: "p"})

func loadSeed(t *testing.T) simulator.Seed {
	t.Helper()
	seed, err := simulator.LoadSeed("../testdata/apiops-seed.json")
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

// startSim serves a fresh simulator and returns it with a client for it.
func startSim(t *testing.T, seed simulator.Seed, opts ...apiops.Option) (*simulator.Server, *apiops.Client) {
	t.Helper()
	sim := simulator.New(seed)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	client, err := apiops.New(srv.URL, apiops.StaticToken(seed.Token), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return sim, client
}

func decode(t *testing.T, project, typ, params string) *messages.Command {
	t.Helper()
	cmd, err := messages.Decode(project, typ, []byte(`{"id":"t1","params":`+params+`}`))
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

func exampleCommand(t *testing.T, typ string) *messages.Command {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../testdata/commands", typ+".json"))
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := messages.DecodeLine(data)
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestEveryEndpointSucceeds sends each type's example to the simulator in each dialect:
// every one reads as saved, with the same environments wherever the dialect reports a
// deployment (an openapi keystore answer has none, as its schema says). A verify
// sends no request of its own (the worker's verifier reads).
func TestEveryEndpointSucceeds(t *testing.T) {
	seed := loadSeed(t)
	for _, dialect := range simulator.Dialects() {
		for _, ct := range messages.Types() {
			if ct.Verifies {
				continue
			}
			t.Run(string(dialect)+"/"+ct.Name, func(t *testing.T) {
				t.Parallel()
				sim, client := startSim(t, seed)
				sim.SetDialect(dialect)
				cmd := exampleCommand(t, ct.Name)
				resp, err := client.Do(context.Background(), cmd.APIRequest())
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusOK || resp.DeployFailed() {
					t.Fatalf("response %+v", resp)
				}
				want := expectedDeployment(cmd, dialect)
				if d := resp.DeploymentResult; want == "" && d != nil {
					t.Errorf("deployment result %+v, want none", d)
				} else if want != "" && (d == nil || !d.Success || environments(d) != want) {
					t.Errorf("deployment result %+v, want success on %s", d, want)
				}
				reqs := sim.Requests()
				if last := reqs[len(reqs)-1]; last.Method != ct.Method || len(reqs) != 1+len(cmd.APIRequest().KeystoreIDs) {
					t.Fatalf("simulator saw %+v", reqs)
				}
			})
		}
	}
}

// expectedDeployment is the environments an example's answer reports as deployed
// (name:true, as environments lists them), "" for none.
func expectedDeployment(cmd *messages.Command, dialect simulator.Dialect) string {
	switch p := cmd.Params.(type) {
	case *messages.ProxyDeploy:
		return p.EnvironmentName + ":true"
	case *messages.ProxyUndeploy:
		return p.EnvironmentName + ":true"
	case *messages.ProxyRollback:
		return p.EnvironmentName + ":true"
	}
	switch resource := cmd.CommandType().Resource; {
	case resource == "credential":
		return "production:true staging:true"
	case resource == "apiProxy" || dialect == simulator.DialectOpenAPI:
		return ""
	}
	return "production:true staging:true"
}

// environments lists a deployment's environments as name:success.
func environments(d *messages.DeploymentResult) string {
	var out []string
	for _, e := range d.EnvironmentResults {
		out = append(out, fmt.Sprintf("%s:%v", e.EnvironmentName, e.Success))
	}
	return strings.Join(out, " ")
}

// TestKeystoreNamesInEveryDialect: one mTLS command that names its keystores enables
// mTLS with them on a server that takes ids (the PATCH carries the ids read from
// APIOps) and on one that takes names.
func TestKeystoreNamesInEveryDialect(t *testing.T) {
	seed := loadSeed(t)
	cmd := decode(t, "MyProject", "proxy.mtls.update", `{"apiProxyName":"MyAPI","enabled":true,"keyStoreName":"client-2026","trustStoreName":"trust-2026"}`)
	for _, dialect := range simulator.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			sim, client := startSim(t, seed)
			sim.SetDialect(dialect)
			if _, err := client.Do(context.Background(), cmd.APIRequest()); err != nil {
				t.Fatal(err)
			}
			p, _ := sim.Proxy("MyProject", "MyAPI")
			if !p.Enabled || p.KeyStoreName != "client-2026" || p.TrustStoreName != "trust-2026" {
				t.Errorf("MyAPI = %+v", p)
			}
			reqs := sim.Requests()
			patch := string(reqs[len(reqs)-1].Body)
			keystoreID, _ := sim.KeystoreID("MyProject", "client-2026")
			withID := strings.Contains(patch, `"keyStoreId":"`+keystoreID+`"`)
			if dialect == simulator.DialectMixed { // its keystore answer carries no id
				withID = !withID && !strings.Contains(patch, "keyStoreId")
			}
			if !withID || !strings.Contains(patch, `"keyStoreName":"client-2026"`) {
				t.Errorf("PATCH body %s; keystore id %s", patch, keystoreID)
			}
		})
	}
}

// TestKeystoreIDIsReadEachTime: after the keystore is deleted and made again under the
// same name, the next command sends the new keystore's id, not the old one's.
func TestKeystoreIDIsReadEachTime(t *testing.T) {
	sim, client := startSim(t, loadSeed(t))
	sim.SetDialect(simulator.DialectDocs)
	ctx := context.Background()
	enable := decode(t, "MyProject", "proxy.mtls.update", `{"apiProxyName":"MyAPI","enabled":true,"keyStoreName":"client-2026"}`)
	before, _ := sim.KeystoreID("MyProject", "client-2026")
	for _, req := range []messages.APIRequest{
		enable.APIRequest(),
		decode(t, "MyProject", "keystore.delete", `{"keystoreName":"client-2026"}`).APIRequest(),
		decode(t, "MyProject", "keystore.create", `{"name":"client-2026","keyStoreEnvironmentList":[{"environmentName":"production","file":"`+jksFile+`","password":"p","keyStoreType":"JKS"}]}`).APIRequest(),
		enable.APIRequest(),
	} {
		if _, err := client.Do(ctx, req); err != nil {
			t.Fatalf("%v: %v", req, err)
		}
	}
	after, _ := sim.KeystoreID("MyProject", "client-2026")
	reqs := sim.Requests()
	if last := string(reqs[len(reqs)-1].Body); before == after || !strings.Contains(last, after) {
		t.Errorf("ids %s then %s; last PATCH %s", before, after, last)
	}
	if p, _ := sim.Proxy("MyProject", "MyAPI"); p.KeyStoreID != after {
		t.Errorf("MyAPI = %+v, want keystore %s", p, after)
	}
}

// TestUnknownKeystoreNameFails: a name APIOps does not know fails the command with
// APIOps's own text, and no PATCH is sent.
func TestUnknownKeystoreNameFails(t *testing.T) {
	for _, dialect := range simulator.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			sim, client := startSim(t, loadSeed(t))
			sim.SetDialect(dialect)
			_, err := client.Do(context.Background(), decode(t, "MyProject", "proxy.mtls.update", `{"apiProxyName":"MyAPI","enabled":true,"keyStoreName":"nope"}`).APIRequest())
			var e *apiops.Error
			if !errors.As(err, &e) || e.Kind != apiops.Permanent || e.Message() != "Keystore (name: nope) is not found!" {
				t.Fatalf("err = %v", err)
			}
			for _, r := range sim.Requests() {
				if r.Method == http.MethodPatch {
					t.Errorf("PATCH sent after the lookup failed: %+v", r)
				}
			}
		})
	}
}

// TestTokenRefreshedOnceOn401: a refused token is fetched again and the request sent
// once more; a second refusal is the caller's to handle.
func TestTokenRefreshedOnceOn401(t *testing.T) {
	seed := loadSeed(t)
	sim := simulator.New(seed)
	srv := httptest.NewServer(sim)
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(seed.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := apiops.New(srv.URL, apiops.NewFileToken(tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	req := exampleCommand(t, "credential.truststore.set").APIRequest()
	if _, err := client.Do(context.Background(), req); err != nil { // the file is read and cached
		t.Fatal(err)
	}
	sim.SetToken("rotated")
	if err := os.WriteFile(tokenFile, []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sim.ResetRequests()
	if _, err := client.Do(context.Background(), req); err != nil {
		t.Fatalf("after the token file changed: %v", err)
	}
	if reqs := sim.Requests(); len(reqs) != 2 || reqs[0].Authorized || !reqs[1].Authorized {
		t.Errorf("requests %+v, want a refused one and an accepted one", reqs)
	}
	sim.SetToken("rotated-again")
	sim.ResetRequests()
	_, err = client.Do(context.Background(), req)
	if !apiops.IsUnauthorized(err) || len(sim.Requests()) != 2 {
		t.Errorf("err = %v after %d requests, want unauthorized after 2", err, len(sim.Requests()))
	}
}

func TestStateChanges(t *testing.T) {
	ctx := context.Background()
	sim, client := startSim(t, loadSeed(t))
	do := func(typ, params string) {
		t.Helper()
		if _, err := client.Do(ctx, decode(t, "MyProject", typ, params).APIRequest()); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	do("credential.truststore.set", `{"username":"api-user","keystoreName":"shared-trust-root"}`) // from the admin project
	do("credential.privatekey.set", `{"username":"api-user","keyName":"partner-key-2026"}`)
	do("credential.keystore.remove", `{"username":"partner-a"}`)
	if c, _ := sim.Credential("MyProject", "api-user"); c.Truststore != "shared-trust-root" || c.PrivateKey != "partner-key-2026" {
		t.Errorf("api-user = %+v", c)
	}
	if c, _ := sim.Credential("MyProject", "partner-a"); c.Keystore != "" {
		t.Errorf("partner-a keystore not removed: %+v", c)
	}
	do("keystore.create", exampleParams(t, "keystore.create"))
	ks, ok := sim.Keystore("MyProject", "trust-2027")
	if !ok || len(ks.Environments) != 2 {
		t.Fatalf("created keystore = %+v %v", ks, ok)
	}
	do("proxy.mtls.update", `{"apiProxyName":"MyAPI","enabled":true,"keyStoreId":"client-2026"}`)
	if p, _ := sim.Proxy("MyProject", "MyAPI"); !p.Enabled || p.KeyStoreID != "client-2026" {
		t.Errorf("MyAPI = %+v", p)
	}
	do("keystore.delete", `{"keystoreName":"legacy-2019","jwkDeleteAction":"DELETE"}`)
	if _, ok := sim.Keystore("MyProject", "legacy-2019"); ok {
		t.Error("legacy-2019 still exists")
	}
}

func exampleParams(t *testing.T, typ string) string {
	data, err := os.ReadFile(filepath.Join("../testdata/commands", typ+".json"))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := strings.Cut(string(data), `"params":`)
	return strings.TrimSuffix(strings.TrimSpace(params), "}")
}

func TestDocumentedErrors(t *testing.T) {
	seed := loadSeed(t)
	sim, client := startSim(t, seed)
	cases := []struct {
		name, project, typ, params string
		status                     int
		code, description          string
	}{
		{"credential not found", "MyProject", "credential.truststore.set", `{"username":"nobody","keystoreName":"trust-2026"}`,
			400, "bad_request", "Credential (username: nobody) was not found!"},
		{"truststore not found", "MyProject", "credential.truststore.set", `{"username":"api-user","keystoreName":"my-truststore"}`,
			400, "bad_request", "Truststore (name: my-truststore) is not found!"},
		{"keystore not found for credential", "MyProject", "credential.keystore.set", `{"username":"api-user","keystoreName":"nope"}`,
			400, "bad_request", "Keystore (name: nope) is not found!"},
		{"key not found", "MyProject", "credential.privatekey.set", `{"username":"api-user","keyName":"my-private-key"}`,
			400, "bad_request", "Key (name: my-private-key) is not found!"},
		{"key is not a private key", "MyProject", "credential.privatekey.set", `{"username":"api-user","keyName":"partner-cert-2026"}`,
			400, "bad_request", "Key (name: partner-cert-2026) is not found!"},
		{"remove when nothing is assigned", "MyProject", "credential.truststore.remove", `{"username":"api-user"}`,
			400, "bad_request", ""},
		{"project not found", "NoSuchProject", "credential.truststore.remove", `{"username":"api-user"}`,
			404, "not_found", "Project(NoSuchProject) was not found or user does not have privilege to access it!"},
		{"keystore already exists", "MyProject", "keystore.create", `{"name":"trust-2025","keyStoreEnvironmentList":[{"environmentName":"production","file":"` + jksFile + `","password":"p","keyStoreType":"JKS"}]}`,
			400, "bad_request", "Keystore (name: trust-2025) is already exist! Try update operation if want to change its value."},
		{"keystore to update not found", "MyProject", "keystore.update", `{"keystoreName":"nope","description":"x"}`,
			400, "bad_request", "Keystore (name: nope) is not found!"},
		{"keystore to delete not found", "MyProject", "keystore.delete", `{"keystoreName":"nope"}`,
			400, "bad_request", "Keystore (name: nope) is not found!"},
		{"proxy not found", "MyProject", "proxy.mtls.update", `{"apiProxyName":"MyAPIx","enabled":false}`,
			404, "not_found", "ApiProxy (name: MyAPIx) was not found!"},
		{"truststore without keystore", "MyProject", "proxy.mtls.update", `{"apiProxyName":"MyAPI","trustStoreName":"trust-2026"}`,
			0, "", ""}, // valid: MyAPI stays disabled
	}
	for _, dialect := range simulator.Dialects() {
		sim.SetDialect(dialect)
		for _, tc := range cases {
			t.Run(string(dialect)+"/"+tc.name, func(t *testing.T) {
				_, err := client.Do(context.Background(), decode(t, tc.project, tc.typ, tc.params).APIRequest())
				if tc.status == 0 {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if dialect != simulator.DialectSeed { // today's APIOps: 400 and no code
					tc.status, tc.code = 400, ""
					if tc.project == "NoSuchProject" {
						tc.description = "Project (NoSuchProject) is not found!"
					}
				}
				var e *apiops.Error
				if !errors.As(err, &e) {
					t.Fatalf("err = %v, want *apiops.Error", err)
				}
				if e.StatusCode != tc.status || e.Code != tc.code || (tc.description != "" && e.Description != tc.description) {
					t.Errorf("got %d %q %q", e.StatusCode, e.Code, e.Description)
				}
				if e.Kind != apiops.Permanent || e.Retryable() || e.Message() != e.Description {
					t.Errorf("kind %v retryable %v message %q", e.Kind, e.Retryable(), e.Message())
				}
			})
		}
	}
}

// TestKeyStoreIDRequired reaches APIOps's own check: enabling mTLS on a proxy that has no
// keystore, by a request the worker's validation would refuse.
func TestKeyStoreIDRequired(t *testing.T) {
	_, client := startSim(t, loadSeed(t))
	req := messages.APIRequest{Method: http.MethodPatch, Path: []string{"apiops", "projects", "MyProject", "apiProxies", "MyAPI", "settings", "mtls"}, Body: []byte(`{"enabled":true}`)}
	_, err := client.Do(context.Background(), req)
	var e *apiops.Error
	if !errors.As(err, &e) || e.StatusCode != 400 || e.Description != "KeyStore ID is required when mTLS is enabled" {
		t.Fatalf("err = %v", err)
	}
}

func TestInvalidToken(t *testing.T) {
	seed := loadSeed(t)
	sim, client := startSim(t, seed)
	sim.SetToken("rotated-token")
	_, err := client.Do(context.Background(), exampleCommand(t, "credential.truststore.set").APIRequest())
	var e *apiops.Error
	if !errors.As(err, &e) || e.StatusCode != 401 || e.Code != "unauthorized_client" || e.Description != "Invalid token" {
		t.Fatalf("err = %v", err)
	}
	if !apiops.IsUnauthorized(err) || apiops.IsRetryable(err) {
		t.Errorf("401 classified as %v", e.Kind)
	}
}

func TestRetryClassification(t *testing.T) {
	seed := loadSeed(t)
	cases := []struct {
		status int
		kind   apiops.Kind
	}{
		{400, apiops.Permanent}, {403, apiops.Permanent}, {404, apiops.Permanent}, {409, apiops.Permanent}, {422, apiops.Permanent},
		{401, apiops.Unauthorized},
		{408, apiops.Transient}, {429, apiops.Transient}, {500, apiops.Transient}, {502, apiops.Transient}, {503, apiops.Transient}, {504, apiops.Transient},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			t.Parallel()
			sim, client := startSim(t, seed)
			sim.FailNext(1, tc.status, 7*time.Second)
			_, err := client.Do(context.Background(), exampleCommand(t, "credential.truststore.set").APIRequest())
			var e *apiops.Error
			if !errors.As(err, &e) || e.StatusCode != tc.status {
				t.Fatalf("err = %v", err)
			}
			if e.Kind != tc.kind || apiops.KindOf(err) != tc.kind {
				t.Errorf("kind = %v, want %v", e.Kind, tc.kind)
			}
			if tc.status == 429 && e.RetryAfter != 7*time.Second {
				t.Errorf("RetryAfter = %v, want 7s", e.RetryAfter)
			}
			// The failed request changed nothing; the next one goes through.
			if _, err := client.Do(context.Background(), exampleCommand(t, "credential.truststore.set").APIRequest()); err != nil {
				t.Errorf("second attempt: %v", err)
			}
		})
	}
}

func TestNonJSONErrorBody(t *testing.T) {
	sim, client := startSim(t, loadSeed(t))
	sim.SetFaults(simulator.Faults{ErrorRate: 1, ErrorStatus: 502, HTMLErrors: true})
	_, err := client.Do(context.Background(), exampleCommand(t, "credential.truststore.set").APIRequest())
	var e *apiops.Error
	if !errors.As(err, &e) || e.StatusCode != 502 || e.Code != "" || !e.Retryable() {
		t.Fatalf("err = %#v", err)
	}
	if e.ResultCode() != "http_502" || !strings.Contains(e.Error(), "502") || !strings.Contains(e.Error(), "text/html") {
		t.Errorf("unclear error: %q (code %s)", e.Error(), e.ResultCode())
	}
	if strings.Contains(e.Error(), "<") {
		t.Errorf("error quotes the HTML page: %q", e.Error())
	}
}

func TestTransportErrorsAreTransient(t *testing.T) {
	t.Run("connection reset", func(t *testing.T) {
		sim, client := startSim(t, loadSeed(t))
		sim.SetFaults(simulator.Faults{ResetRate: 1})
		_, err := client.Do(context.Background(), exampleCommand(t, "credential.truststore.set").APIRequest())
		var e *apiops.Error
		if !errors.As(err, &e) || e.StatusCode != 0 || !e.Retryable() || e.ResultCode() != "network_error" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		sim, client := startSim(t, loadSeed(t), apiops.WithTimeout(50*time.Millisecond))
		sim.SetFaults(simulator.Faults{Latency: 2 * time.Second})
		_, err := client.Do(context.Background(), exampleCommand(t, "credential.truststore.set").APIRequest())
		if !apiops.IsRetryable(err) || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("down then up", func(t *testing.T) {
		sim, client := startSim(t, loadSeed(t))
		sim.Down(time.Hour)
		if _, err := client.Do(context.Background(), exampleCommand(t, "credential.truststore.set").APIRequest()); !apiops.IsRetryable(err) {
			t.Fatalf("while down: %v", err)
		}
		sim.Down(0)
		if _, err := client.Do(context.Background(), exampleCommand(t, "credential.truststore.set").APIRequest()); err != nil {
			t.Fatalf("after up: %v", err)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		client, err := apiops.New(srv.URL, apiops.StaticToken("t"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Do(context.Background(), exampleCommand(t, "credential.truststore.set").APIRequest()); !apiops.IsRetryable(err) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestPartialDeployment(t *testing.T) {
	sim, client := startSim(t, loadSeed(t))
	sim.SetFaults(simulator.Faults{FailEnvironments: []string{"staging"}})
	resp, err := client.Do(context.Background(), exampleCommand(t, "credential.truststore.set").APIRequest())
	if err != nil {
		t.Fatal(err)
	}
	d := resp.DeploymentResult
	if ok, failed := d.EnvironmentCounts(); d.Success || ok != 1 || failed != 1 {
		t.Fatalf("deployment %+v", d)
	}
	if c, _ := sim.Credential("MyProject", "api-user"); c.Truststore != "trust-2026" {
		t.Errorf("partial deployment did not save: %+v", c)
	}
}

func TestPathEscaping(t *testing.T) {
	seed := loadSeed(t)
	names := []string{"../../admin", "a/b", "%2e%2e", "名前", "a?b#c", "..", "admin"}
	p := seed.Projects["MyProject"]
	p.Credentials = map[string]simulator.CredentialState{}
	for _, n := range names {
		p.Credentials[n] = simulator.CredentialState{}
	}
	seed.Projects["MyProject"] = p
	sim, client := startSim(t, seed)
	for _, name := range names[:5] {
		t.Run(name, func(t *testing.T) {
			sim.ResetRequests()
			req := messages.APIRequest{Method: http.MethodPut, Path: []string{"apiops", "projects", "MyProject", "credentials", name, "truststore", "trust-2026"}}
			if _, err := client.Do(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			reqs := sim.Requests()
			segs := strings.Split(strings.Trim(reqs[0].Path, "/"), "/")
			if len(reqs) != 1 || len(segs) != 7 {
				t.Fatalf("the name was not sent as one segment: %+v", reqs)
			}
			for _, other := range names {
				c, _ := sim.Credential("MyProject", other)
				if (other == name) != (c.Truststore == "trust-2026") {
					t.Errorf("credential %q = %+v after setting %q", other, c, name)
				}
			}
			// Undo, so that the next case starts clean.
			req = messages.APIRequest{Method: http.MethodDelete, Path: []string{"apiops", "projects", "MyProject", "credentials", name, "truststore"}}
			if _, err := client.Do(context.Background(), req); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, name := range []string{".", "..", ""} {
		sim.ResetRequests()
		req := messages.APIRequest{Method: http.MethodPut, Path: []string{"apiops", "projects", "MyProject", "credentials", name, "truststore", "trust-2026"}}
		if _, err := client.Do(context.Background(), req); err == nil || apiops.IsRetryable(err) {
			t.Errorf("segment %q: err = %v, want a permanent error", name, err)
		}
		if n := len(sim.Requests()); n != 0 {
			t.Errorf("segment %q reached the server", name)
		}
	}
}

func TestTokenNeverInErrors(t *testing.T) {
	const token = "tok-4e1d9b7c-SECRET"
	const password = "pw-SECRET-91aa"
	seed := loadSeed(t)
	seed.Token = token
	sim := simulator.New(seed)
	srv := httptest.NewServer(sim)
	defer srv.Close()
	client, err := apiops.New(srv.URL, apiops.StaticToken(token), apiops.WithTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	create := decode(t, "MyProject", "keystore.create", `{"name":"trust-2025","keyStoreEnvironmentList":[{"environmentName":"production","file":"`+keystorestest.Base64(keystorestest.Spec{Kind: "JKS", Password: password})+`","password":"`+password+`","keyStoreType":"JKS"}]}`)
	var errs []error
	try := func(f simulator.Faults) {
		sim.SetFaults(f)
		_, err := client.Do(context.Background(), create.APIRequest())
		errs = append(errs, err)
	}
	try(simulator.Faults{})                               // 400 already exists
	try(simulator.Faults{ErrorRate: 1, ErrorStatus: 503}) // JSON 503
	try(simulator.Faults{ErrorRate: 1, ErrorStatus: 502, HTMLErrors: true})
	try(simulator.Faults{ResetRate: 1})
	try(simulator.Faults{Latency: time.Second})
	sim.SetFaults(simulator.Faults{})
	sim.SetToken("other")
	_, err = client.Do(context.Background(), create.APIRequest())
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("want an error")
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			if strings.Contains(s, token) || strings.Contains(s, password) {
				t.Errorf("error shows a secret: %s", s)
			}
		}
	}
}

func TestRetryAfterHTTPDate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	client, _ := apiops.New(srv.URL, apiops.StaticToken("t"))
	_, err := client.Do(context.Background(), messages.APIRequest{Method: "PUT", Path: []string{"x"}})
	var e *apiops.Error
	if !errors.As(err, &e) || e.RetryAfter < 80*time.Second || e.RetryAfter > 90*time.Second {
		t.Fatalf("err = %v, RetryAfter = %v", err, e.RetryAfter)
	}
}

func TestFileTokenRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("  first-token\n")
	tokens := apiops.NewFileToken(path)
	ctx := context.Background()
	if tok, err := tokens.Token(ctx); err != nil || tok != "first-token" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	write("second-token\n")
	if tok, _ := tokens.Token(ctx); tok != "first-token" {
		t.Errorf("re-read the file before Refresh: %q", tok)
	}
	tokens.Refresh("some-older-token") // refused long ago: the copy in hand stays
	if tok, _ := tokens.Token(ctx); tok != "first-token" {
		t.Errorf("re-read the file after another token's Refresh: %q", tok)
	}
	tokens.Refresh("first-token")
	if tok, _ := tokens.Token(ctx); tok != "second-token" {
		t.Errorf("after Refresh: %q", tok)
	}
	write(" \n")
	tokens.Refresh("second-token")
	if _, err := tokens.Token(ctx); err == nil {
		t.Error("empty token file accepted")
	}
	os.Remove(path)
	if _, err := tokens.Token(ctx); err == nil || !apiops.IsUnauthorized(&apiops.Error{Kind: apiops.Unauthorized, Err: err}) {
		t.Errorf("missing token file: %v", err)
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	for _, u := range []string{"", "apinizer.example.com", "ftp://x", "http://"} {
		if _, err := apiops.New(u, apiops.StaticToken("t")); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	if _, err := apiops.New("http://x", apiops.StaticToken("t"), apiops.WithCAFile("/does/not/exist")); err == nil {
		t.Error("missing CA file accepted")
	}
	if _, err := apiops.New("http://x", apiops.StaticToken("t"), apiops.WithTimeout(0)); err == nil {
		t.Error("zero timeout accepted")
	}
}

// TestKeystoreNameClearsInEveryDialect: the empty name clears the truststore on a
// server that takes ids and on one that takes names, with no lookup.
func TestKeystoreNameClearsInEveryDialect(t *testing.T) {
	cmd := decode(t, "MyProject", "proxy.mtls.update", `{"apiProxyName":"PaymentsAPI","trustStoreName":""}`)
	for _, dialect := range simulator.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			sim, client := startSim(t, loadSeed(t))
			sim.SetDialect(dialect)
			if _, err := client.Do(context.Background(), cmd.APIRequest()); err != nil {
				t.Fatal(err)
			}
			if p, _ := sim.Proxy("MyProject", "PaymentsAPI"); p.TrustStoreID != "" || p.TrustStoreName != "" {
				t.Errorf("PaymentsAPI = %+v, want no truststore", p)
			}
			if reqs := sim.Requests(); len(reqs) != 1 || string(reqs[0].Body) != `{"trustStoreName":"","trustStoreId":""}` {
				t.Errorf("requests %+v", reqs)
			}
		})
	}
}

// TestKeystoreLookupFailures: a lookup that fails sends no PATCH; a transient failure
// is transient, an answer in no known shape is unrecognised, not "not found".
func TestKeystoreLookupFailures(t *testing.T) {
	req := decode(t, "MyProject", "proxy.mtls.update", `{"apiProxyName":"MyAPI","enabled":true,"keyStoreName":"client-2026"}`).APIRequest()
	for _, tc := range []struct {
		name   string
		answer string // "" lets the simulator answer after a 503
		kind   apiops.Kind
		code   string
	}{
		{"503", "", apiops.Transient, "service_unavailable"},
		{"no resultList", `{"status":"SUCCESS"}`, apiops.Permanent, apiops.CodeUnrecognisedResponse},
		{"id a number", `{"status":"SUCCESS","resultList":[{"id":42,"name":"client-2026"}]}`, apiops.Permanent, apiops.CodeUnrecognisedResponse},
		{"entry not an object", `{"status":"SUCCESS","resultList":["client-2026"]}`, apiops.Permanent, apiops.CodeUnrecognisedResponse},
		{"status FAILURE", `{"status":"FAILURE","resultMessage":"User does not have required permission for this operation!"}`, apiops.Permanent, "http_200"},
		{"empty resultList", `{"status":"SUCCESS","resultList":[]}`, apiops.Permanent, "http_200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := simulator.New(loadSeed(t))
			sim.SetDialect(simulator.DialectDocs)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet && tc.answer != "" {
					w.Header().Set("Content-Type", "application/json")
					_, _ = io.WriteString(w, tc.answer)
					return
				}
				sim.ServeHTTP(w, r)
			}))
			defer srv.Close()
			if tc.answer == "" {
				sim.FailNext(1, http.StatusServiceUnavailable, 0)
			}
			client, _ := apiops.New(srv.URL, apiops.StaticToken("sim-token"))
			_, err := client.Do(context.Background(), req)
			var e *apiops.Error
			if !errors.As(err, &e) || e.Kind != tc.kind || e.ResultCode() != tc.code {
				t.Fatalf("err = %v (%+v), want %v %s", err, e, tc.kind, tc.code)
			}
			for _, r := range sim.Requests() {
				if r.Method == http.MethodPatch {
					t.Errorf("PATCH sent after the lookup failed")
				}
			}
		})
	}
}

// TestIDServerWithoutIDsInLookups: a server that takes ids in the PATCH but shows none
// in its keystore answers (as its pages do, read literally) cannot be given a keystore by
// name: the command fails with APIOps's own text, and is never reported as done.
func TestIDServerWithoutIDsInLookups(t *testing.T) {
	sim := simulator.New(loadSeed(t))
	sim.SetDialect(simulator.DialectDocs)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			sim.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, r)
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Errorf("keystore answer: %v", err)
		}
		for _, entry := range body["resultList"].([]any) {
			delete(entry.(map[string]any), "id")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	}))
	defer srv.Close()
	client, _ := apiops.New(srv.URL, apiops.StaticToken("sim-token"))
	_, err := client.Do(context.Background(), decode(t, "MyProject", "proxy.mtls.update", `{"apiProxyName":"MyAPI","enabled":true,"keyStoreName":"client-2026"}`).APIRequest())
	var e *apiops.Error
	if !errors.As(err, &e) || e.Kind != apiops.Permanent || e.Message() != "KeyStore ID is required when mTLS is enabled" {
		t.Fatalf("err = %v", err)
	}
	if p, _ := sim.Proxy("MyProject", "MyAPI"); p.Enabled {
		t.Errorf("MyAPI = %+v", p)
	}
}

// TestTokenNeverQuoted: an APIOps that quotes the request's token in its answer does
// not get it into the error.
func TestTokenNeverQuoted(t *testing.T) {
	const token = "the-secret-bearer-token-42"
	for _, body := range []string{
		`{"status":"FAILURE","resultMessage":"Token ` + token + ` is not valid!"}`,
		`{"error":"bad_request","error_description":"Bearer ` + token + `"}`,
	} {
		for _, status := range []int{200, 400, 401} {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				_, _ = io.WriteString(w, body)
			}))
			client, _ := apiops.New(srv.URL, apiops.StaticToken(token))
			_, err := client.Do(context.Background(), decode(t, "MyProject", "proxy.mtls.update", `{"apiProxyName":"MyAPI","enabled":true,"keyStoreName":"k"}`).APIRequest())
			srv.Close()
			if err == nil || strings.Contains(err.Error(), token) || strings.Contains(err.(*apiops.Error).Message(), token) {
				t.Errorf("%d %s: %v", status, body, err)
			}
		}
	}
}
