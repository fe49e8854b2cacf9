package simulator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

const (
	seedFile = "../../testdata/apiops-seed.json"
	token    = "sim-token"

	deployedMyProject = `{"success":true,"deploymentResult":{"success":true,` +
		`"message":"Deployment completed successfully","environmentResults":[` +
		`{"environmentName":"production","success":true,"message":"Deployed successfully"},` +
		`{"environmentName":"staging","success":true,"message":"Deployed successfully"}]}}`
	undeployedMyProject = `{"success":true,"deploymentResult":{"success":true,` +
		`"message":"Undeployment completed successfully","environmentResults":[` +
		`{"environmentName":"production","success":true,"message":"Undeployed successfully"},` +
		`{"environmentName":"staging","success":true,"message":"Undeployed successfully"}]}}`
	deployedTeamA = `{"success":true,"deploymentResult":{"success":true,` +
		`"message":"Deployment completed successfully","environmentResults":[` +
		`{"environmentName":"production","success":true,"message":"Deployed successfully"},` +
		`{"environmentName":"staging","success":true,"message":"Deployed successfully"},` +
		`{"environmentName":"test","success":true,"message":"Deployed successfully"}]}}`
	mtlsOK = `{"success":true}`
)

func loadSeed(t testing.TB) simulator.Seed {
	t.Helper()
	seed, err := simulator.LoadSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

// start serves a fresh simulator from the shared seed file.
func start(t testing.TB) (*simulator.Server, *httptest.Server) {
	t.Helper()
	return serve(t, loadSeed(t))
}

func serve(t testing.TB, seed simulator.Seed) (*simulator.Server, *httptest.Server) {
	t.Helper()
	sim := simulator.New(seed)
	ts := httptest.NewServer(sim)
	t.Cleanup(ts.Close)
	return sim, ts
}

type response struct {
	status int
	header http.Header
	body   string
}

// send makes one request with the given Authorization header ("" for none).
// path may hold a query and must already be escaped.
func send(t testing.TB, ts *httptest.Server, auth, method, path, body string) (response, error) {
	t.Helper()
	var reqBody io.Reader
	if body != "" {
		reqBody = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+path, reqBody)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := ts.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}, nil
}

// call makes one authorised request that must get an answer.
func call(t testing.TB, ts *httptest.Server, method, path, body string) response {
	t.Helper()
	res, err := send(t, ts, "Bearer "+token, method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res
}

func wantBody(t testing.TB, res response, status int, body string) {
	t.Helper()
	if res.status != status || res.body != body {
		t.Fatalf("got %d %s\nwant %d %s", res.status, res.body, status, body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

func wantError(t testing.TB, res response, status int, code, description string) {
	t.Helper()
	if res.status != status {
		t.Fatalf("status = %d, want %d (body %s)", res.status, status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var got struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal([]byte(res.body), &got); err != nil {
		t.Fatalf("error body %q: %v", res.body, err)
	}
	if got.Error != code || got.Description != description {
		t.Errorf("error = %q %q\nwant    %q %q", got.Error, got.Description, code, description)
	}
}

// apiCase is one request against a fresh simulator seeded from seedFile.
type apiCase struct {
	name   string
	method string
	path   string
	body   string
	status int
	want   string // exact body of a success
	code   string // error code of a failure
	desc   string // error_description of a failure
	allow  string // Allow header of a 405
	check  func(t *testing.T, sim *simulator.Server)
}

func runCases(t *testing.T, cases []apiCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim, ts := start(t)
			res := call(t, ts, tc.method, tc.path, tc.body)
			if tc.code != "" {
				wantError(t, res, tc.status, tc.code, tc.desc)
			} else {
				wantBody(t, res, tc.status, tc.want)
			}
			if got := res.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if tc.check != nil {
				tc.check(t, sim)
			}
		})
	}
}

// partnerA is partner-a as seeded, after edit changes it.
func partnerA(edit func(c *simulator.CredentialState)) simulator.CredentialState {
	c := simulator.CredentialState{
		Keystore: "client-2025", Truststore: "trust-2025", PrivateKey: "partner-key-2025",
		PublicKey: "partner-pub-2025", SecretKey: "partner-hmac-2025", Certificate: "partner-cert-2025",
	}
	if edit != nil {
		edit(&c)
	}
	return c
}

func credentialIs(project, username string, want simulator.CredentialState) func(*testing.T, *simulator.Server) {
	return func(t *testing.T, sim *simulator.Server) {
		t.Helper()
		got, ok := sim.Credential(project, username)
		if !ok || got != want {
			t.Errorf("Credential(%s, %s) = %+v, %v; want %+v", project, username, got, ok, want)
		}
	}
}

func keystoreExists(project, name string, want bool) func(*testing.T, *simulator.Server) {
	return func(t *testing.T, sim *simulator.Server) {
		t.Helper()
		if _, ok := sim.Keystore(project, name); ok != want {
			t.Errorf("Keystore(%s, %s) exists = %v, want %v", project, name, ok, want)
		}
	}
}
