package simulator_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

const (
	seedD    = simulator.DialectSeed
	docsD    = simulator.DialectDocs
	openapiD = simulator.DialectOpenAPI
	mixedD   = simulator.DialectMixed
)

// startIn serves a fresh simulator from the shared seed file in dialect d.
func startIn(t testing.TB, d simulator.Dialect) (*simulator.Server, *httptest.Server) {
	t.Helper()
	sim, ts := start(t)
	sim.SetDialect(d)
	return sim, ts
}

// hex24 in an expected body matches any id: 24 lowercase hex digits;
// anyString matches any string.
const (
	hex24     = "{{hex24}}"
	anyString = "{{any}}"
)

var idPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

// wantJSON checks an answer's status and its body's exact JSON shape: every
// member, no more, with the values of want. Member order and spacing do not
// matter; hex24 stands for any id.
func wantJSON(t testing.TB, res response, status int, want string) {
	t.Helper()
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("expected body %s: %v", want, err)
	}
	if err := json.Unmarshal([]byte(res.body), &g); err != nil {
		t.Fatalf("body %q: %v", res.body, err)
	}
	if err := match("$", w, g); res.status != status || err != nil {
		t.Fatalf("got %d %s\nwant %d %s\n%v", res.status, res.body, status, want, err)
	}
}

func match(path string, want, got any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %v, want an object", path, got)
		}
		if !slices.Equal(slices.Sorted(maps.Keys(w)), slices.Sorted(maps.Keys(g))) {
			return fmt.Errorf("%s: members %v, want %v", path, slices.Sorted(maps.Keys(g)), slices.Sorted(maps.Keys(w)))
		}
		for k := range w {
			if err := match(path+"."+k, w[k], g[k]); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want %d items", path, got, len(w))
		}
		for i := range w {
			if err := match(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); err != nil {
				return err
			}
		}
		return nil
	case string:
		if g, ok := got.(string); ok && (w == hex24 && idPattern.MatchString(g) || w == anyString) {
			return nil
		}
	}
	if !reflect.DeepEqual(want, got) {
		return fmt.Errorf("%s: got %#v, want %#v", path, got, want)
	}
	return nil
}

// withIDs replaces {{id:NAME}} in s by the id of MyProject's keystore NAME.
func withIDs(t testing.TB, sim *simulator.Server, s string, ids map[string]string) string {
	t.Helper()
	return regexp.MustCompile(`\{\{id:([^}]+)\}\}`).ReplaceAllStringFunc(s, func(m string) string {
		name := m[len("{{id:") : len(m)-2]
		if id, ok := ids[name]; ok {
			return id
		}
		id, ok := sim.KeystoreID("MyProject", name)
		if !ok {
			t.Fatalf("no keystore %s for %s", name, m)
		}
		return id
	})
}

func keystoreIDs(sim *simulator.Server, names ...string) map[string]string {
	ids := map[string]string{}
	for _, name := range names {
		if id, ok := sim.KeystoreID("MyProject", name); ok {
			ids[name] = id
		}
	}
	return ids
}

func TestDialects(t *testing.T) {
	t.Parallel()
	if got := simulator.Dialects(); !slices.Equal(got, []simulator.Dialect{seedD, docsD, openapiD, mixedD}) {
		t.Errorf("Dialects() = %v", got)
	}
	for _, d := range simulator.Dialects() {
		if got, err := simulator.ParseDialect(string(d)); got != d || err != nil {
			t.Errorf("ParseDialect(%q) = %q, %v", d, got, err)
		}
	}
	for _, bad := range []string{"", "Seed", "swagger"} {
		_, err := simulator.ParseDialect(bad)
		if err == nil || !strings.Contains(err.Error(), "seed, docs, openapi, mixed") || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("ParseDialect(%q) error = %v, want one naming it and the valid values", bad, err)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "seed, docs, openapi, mixed") {
			t.Errorf("SetDialect(unknown) recovered %v, want a panic naming the valid values", r)
		}
	}()
	simulator.New(loadSeed(t)).SetDialect("v2")
}

// Per-environment results of a deployment to production and staging where
// staging fails, in each form.
const (
	byEnvironmentStagingFails = `{"success":false,"message":"Deployment completed with errors","environmentResults":[` +
		`{"environmentName":"production","success":true,"message":"Deployed successfully"},` +
		`{"environmentName":"staging","success":false,"message":"Gateway timeout"}]}`
	byPodStagingFails = `{"success":false,"responseTime":30000,"detailList":[` +
		`{"envName":"production","podName":"production-worker-0","podIp":"10.0.1.1","success":true,"detail":"Deployed successfully","responseTime":42},` +
		`{"envName":"production","podName":"production-worker-1","podIp":"10.0.1.2","success":true,"detail":"Deployed successfully","responseTime":45},` +
		`{"envName":"staging","podName":"staging-worker-0","podIp":"10.0.2.1","success":true,"detail":"Deployed successfully","responseTime":42},` +
		`{"envName":"staging","podName":"staging-worker-1","podIp":"10.0.2.2","success":false,"detail":"Gateway timeout","responseTime":30000}]}`
	undeployedByEnvironment = `{"success":true,"message":"Undeployment completed successfully","environmentResults":[` +
		`{"environmentName":"production","success":true,"message":"Undeployed successfully"},` +
		`{"environmentName":"staging","success":true,"message":"Undeployed successfully"}]}`
	deployedByEnvironment = `{"success":true,"message":"Deployment completed successfully","environmentResults":[` +
		`{"environmentName":"production","success":true,"message":"Deployed successfully"},` +
		`{"environmentName":"staging","success":true,"message":"Deployed successfully"}]}`
	deployedByPod = `{"success":true,"responseTime":45,"detailList":[` +
		`{"envName":"production","podName":"production-worker-0","podIp":"10.0.1.1","success":true,"detail":"Deployed successfully","responseTime":42},` +
		`{"envName":"production","podName":"production-worker-1","podIp":"10.0.1.2","success":true,"detail":"Deployed successfully","responseTime":45},` +
		`{"envName":"staging","podName":"staging-worker-0","podIp":"10.0.2.1","success":true,"detail":"Deployed successfully","responseTime":42},` +
		`{"envName":"staging","podName":"staging-worker-1","podIp":"10.0.2.2","success":true,"detail":"Deployed successfully","responseTime":45}]}`
)

// dialectAnswer is a status and an exact body.
type dialectAnswer struct {
	status int
	body   string
}

// TestDialectBodies checks each endpoint's answer in each dialect, over HTTP.
func TestDialectBodies(t *testing.T) {
	t.Parallel()
	// The mTLS body names the keystore both ways, so every dialect finds it.
	const mtlsBody = `{"enabled":true,"keyStoreId":"{{id:client-2026}}","keyStoreName":"client-2026"}`
	const mtlsDeployBody = `{"supportedProtocolList":["TLS_1_3"],"deploy":true,"deployTargetEnvironmentNameList":["production","staging"]}`
	createBody := keystoreBody(func(ks map[string]any, envs []map[string]any) { ks["keyStoreEnvironmentList"] = envs[:1] })
	// A seeded keystore holds a generated PKCS12 file for each environment.
	seedKeystore := `{"id":"{{id:client-2026}}","name":"client-2026","description":"","projectId":"` + hex24 + `","keyStoreEnvironmentList":[` +
		`{"environmentName":"production","alias":"client-2026","keyStoreType":"PKCS12"},{"environmentName":"staging","alias":"client-2026","keyStoreType":"PKCS12"}]}`
	listedEnvironment := `{"environmentId":"` + hex24 + `","file":"` + anyString + `","password":"` + anyString + `","alias":"client-2026","keyStoreType":"PKCS12"}`
	createdKeystore := `{"id":"{{id:client-2027}}","name":"client-2027","description":"2027 client","projectId":"` + hex24 + `",` +
		`"keyStoreEnvironmentList":[{"environmentName":"production","alias":"client","keyStoreType":"PKCS12"}]}`
	envelope := func(text string) string { return `{"status":"FAILURE","resultMessage":"` + text + `"}` }
	seedError := func(code, text string) string { return `{"error":"` + code + `","error_description":"` + text + `"}` }

	for _, tc := range []struct {
		name                 string
		auth                 string // Authorization header; the seed's token when ""
		method, path, body   string
		failStaging          bool
		seed, docs, oa, mixd dialectAnswer
	}{
		{
			name: "credential secret set", method: "PUT", path: setTruststore, failStaging: true,
			seed: dialectAnswer{200, `{"success":true,"deploymentResult":` + byEnvironmentStagingFails + `}`},
			docs: dialectAnswer{200, `{"status":"SUCCESS","deploymentResult":` + byEnvironmentStagingFails + `}`},
			oa: dialectAnswer{200, `{"status":"SUCCESS","resultMessage":"Truststore (name: trust-2026) is assigned to Credential (username: api-user).",` +
				`"resultList":[],"resultCount":0,"deploymentResult":` + byPodStagingFails + `}`},
			mixd: dialectAnswer{200, `{"status":"SUCCESS","deploymentResult":` + byEnvironmentStagingFails + `}`},
		},
		{
			// Today's pages call the credential's deployment after a removal a
			// deployment; the seed's pages an undeployment.
			name: "credential secret removed", method: "DELETE", path: creds + "partner-b/truststore/",
			seed: dialectAnswer{200, `{"success":true,"deploymentResult":` + undeployedByEnvironment + `}`},
			docs: dialectAnswer{200, `{"status":"SUCCESS","deploymentResult":` + deployedByEnvironment + `}`},
			oa: dialectAnswer{200, `{"status":"SUCCESS","resultMessage":"Truststore is removed from Credential (username: partner-b).",` +
				`"resultList":[],"resultCount":0,"deploymentResult":` + deployedByPod + `}`},
			mixd: dialectAnswer{200, `{"status":"SUCCESS","deploymentResult":` + deployedByEnvironment + `}`},
		},
		{
			name: "keystore created", method: "POST", path: keystores, body: createBody, failStaging: true,
			seed: dialectAnswer{200, `{"success":true,"deploymentResult":` + byEnvironmentStagingFails + `}`},
			docs: dialectAnswer{200, `{"status":"SUCCESS","deploymentResult":` + byEnvironmentStagingFails + `}`},
			oa: dialectAnswer{200, `{"status":"SUCCESS","resultMessage":"Keystore (name: client-2027) is created.",` +
				`"resultList":[` + createdKeystore + `],"resultCount":1}`},
			mixd: dialectAnswer{200, `{"success":true,"deploymentResult":` + byEnvironmentStagingFails + `}`},
		},
		{
			name: "keystore updated", method: "PUT", path: keystores + "client-2026/", body: `{"description":"renewed"}`,
			seed: dialectAnswer{200, `{"success":true,"deploymentResult":` + deployedByEnvironment + `}`},
			docs: dialectAnswer{200, `{"status":"SUCCESS","deploymentResult":` + deployedByEnvironment + `}`},
			oa: dialectAnswer{200, `{"status":"SUCCESS","resultMessage":"Keystore (name: client-2026) is updated.","resultList":[` +
				strings.Replace(seedKeystore, `"description":""`, `"description":"renewed"`, 1) + `],"resultCount":1}`},
			mixd: dialectAnswer{200, `{"success":true,"deploymentResult":` + deployedByEnvironment + `}`},
		},
		{
			name: "keystore deleted", method: "DELETE", path: keystores + "client-2026/",
			seed: dialectAnswer{200, `{"success":true,"deploymentResult":` + undeployedByEnvironment + `}`},
			docs: dialectAnswer{200, `{"status":"SUCCESS","deploymentResult":` + undeployedByEnvironment + `}`},
			oa: dialectAnswer{200, `{"status":"SUCCESS","resultMessage":"Keystore (name: client-2026) is deleted.",` +
				`"resultList":[` + seedKeystore + `],"resultCount":1}`},
			mixd: dialectAnswer{200, `{"success":true,"deploymentResult":` + undeployedByEnvironment + `}`},
		},
		{
			name: "keystore read", method: "GET", path: keystores + "client-2026/",
			seed: dialectAnswer{200, `{"success":true,"resultList":[` + seedKeystore + `]}`},
			docs: dialectAnswer{200, `{"status":"SUCCESS","resultList":[` + seedKeystore + `],"resultCount":1}`},
			oa:   dialectAnswer{200, `{"status":"SUCCESS","resultList":[` + seedKeystore + `],"resultCount":1}`},
			mixd: dialectAnswer{200, `{"status":"SUCCESS","resultList":[{"name":"client-2026","description":"","projectId":"` + hex24 + `","keyStoreEnvironmentList":[` +
				listedEnvironment + `,` + listedEnvironment + `]}]}`},
		},
		{
			name: "mTLS without deploy", method: "PATCH", path: myProject + "apiProxies/MyAPI/settings/mtls/", body: mtlsBody,
			seed: dialectAnswer{200, `{"success":true}`},
			docs: dialectAnswer{200, `{"status":"SUCCESS"}`},
			oa: dialectAnswer{200, `{"status":"SUCCESS","resultMessage":"mTLS settings of ApiProxy (name: MyAPI) are updated.",` +
				`"resultList":[],"resultCount":0,"deploymentResult":null}`},
			mixd: dialectAnswer{200, `{"success":true}`},
		},
		{
			name: "mTLS with deploy", method: "PATCH", path: myProject + "apiProxies/PaymentsAPI/settings/mtls/", body: mtlsDeployBody,
			failStaging: true,
			// The page we started from and openapi.yaml know no deploy: ignored.
			seed: dialectAnswer{200, `{"success":true}`},
			docs: dialectAnswer{200, `{"status":"SUCCESS","deploymentResult":` + byEnvironmentStagingFails + `}`},
			oa: dialectAnswer{200, `{"status":"SUCCESS","resultMessage":"mTLS settings of ApiProxy (name: PaymentsAPI) are updated.",` +
				`"resultList":[],"resultCount":0,"deploymentResult":null}`},
			mixd: dialectAnswer{200, `{"success":true,"deploymentResult":{"success":false,"deploymentResults":[` +
				`{"environmentName":"production","success":true,"message":"Deployed successfully"},` +
				`{"environmentName":"staging","success":false,"message":"Gateway timeout"}]}}`},
		},
		{
			name: "missing credential", method: "PUT", path: creds + "api-user2/truststore/trust-2026/",
			seed: dialectAnswer{400, seedError("bad_request", "Credential (username: api-user2) was not found!")},
			docs: dialectAnswer{400, envelope("Credential (username: api-user2) was not found!")},
			oa:   dialectAnswer{400, envelope("Credential (username: api-user2) was not found!")},
			mixd: dialectAnswer{400, envelope("Credential (username: api-user2) was not found!")},
		},
		{
			name: "missing keystore", method: "POST", path: keystores, body: keystoreBody(func(ks map[string]any, _ []map[string]any) { ks["name"] = "trust-2026" }),
			seed: dialectAnswer{400, seedError("bad_request", "Keystore (name: trust-2026) is already exist! Try update operation if want to change its value.")},
			docs: dialectAnswer{400, envelope("Keystore (name: trust-2026) is already exist! Try update operation if want to change its value.")},
			oa:   dialectAnswer{400, envelope("Keystore (name: trust-2026) is already exist! Try update operation if want to change its value.")},
			mixd: dialectAnswer{400, envelope("Keystore (name: trust-2026) is already exist! Try update operation if want to change its value.")},
		},
		{
			name: "missing project", method: "DELETE", path: "/apiops/projects/NoSuch/keystores/client-2026/",
			seed: dialectAnswer{404, seedError("not_found", "Project(NoSuch) was not found or user does not have privilege to access it!")},
			docs: dialectAnswer{400, envelope("Project (NoSuch) is not found!")},
			oa:   dialectAnswer{400, envelope("Project (NoSuch) is not found!")},
			mixd: dialectAnswer{400, envelope("Project (NoSuch) is not found!")},
		},
		{
			name: "missing proxy", method: "PATCH", path: myProject + "apiProxies/NoAPI/settings/mtls/", body: `{}`,
			seed: dialectAnswer{404, seedError("not_found", "ApiProxy (name: NoAPI) was not found!")},
			docs: dialectAnswer{400, envelope("ApiProxy (name: NoAPI) was not found!")},
			oa:   dialectAnswer{400, envelope("ApiProxy (name: NoAPI) was not found!")},
			mixd: dialectAnswer{400, envelope("ApiProxy (name: NoAPI) was not found!")},
		},
		{
			name: "no Authorization header", auth: "none", method: "PUT", path: setTruststore,
			seed: dialectAnswer{401, seedError("unauthorized_client", "Invalid token")},
			docs: dialectAnswer{401, envelope("Empty Key! Client must be authenticated to access this resource.")},
			oa:   dialectAnswer{401, envelope("Empty Key! Client must be authenticated to access this resource.")},
			mixd: dialectAnswer{401, envelope("Empty Key! Client must be authenticated to access this resource.")},
		},
		{
			name: "wrong token", auth: "Bearer sim-token-old", method: "GET", path: keystores + "client-2026/",
			seed: dialectAnswer{401, seedError("unauthorized_client", "Invalid token")},
			docs: dialectAnswer{401, envelope("Token is not valid!")},
			oa:   dialectAnswer{401, envelope("Token is not valid!")},
			mixd: dialectAnswer{401, envelope("Token is not valid!")},
		},
		{
			// Answers of the HTTP layer keep their status in every dialect.
			name: "no such endpoint", method: "GET", path: myProject + "keystores/client-2026/export/",
			seed: dialectAnswer{404, seedError("not_found", "No endpoint for GET "+keystores+"client-2026/export/")},
			docs: dialectAnswer{404, envelope("No endpoint for GET " + keystores + "client-2026/export/")},
			oa:   dialectAnswer{404, envelope("No endpoint for GET " + keystores + "client-2026/export/")},
			mixd: dialectAnswer{404, envelope("No endpoint for GET " + keystores + "client-2026/export/")},
		},
	} {
		for d, want := range map[simulator.Dialect]dialectAnswer{seedD: tc.seed, docsD: tc.docs, openapiD: tc.oa, mixedD: tc.mixd} {
			t.Run(tc.name+"/"+string(d), func(t *testing.T) {
				t.Parallel()
				sim, ts := startIn(t, d)
				if tc.failStaging {
					sim.SetFaults(simulator.Faults{FailEnvironments: []string{"staging"}})
				}
				ids := keystoreIDs(sim, "client-2026")
				auth := "Bearer " + token
				switch tc.auth {
				case "":
				case "none":
					auth = ""
				default:
					auth = tc.auth
				}
				res, err := send(t, ts, auth, tc.method, tc.path, withIDs(t, sim, tc.body, ids))
				if err != nil {
					t.Fatal(err)
				}
				wantJSON(t, res, want.status, withIDs(t, sim, want.body, ids))
			})
		}
	}
}

// environmentOutcomes reads the per-environment success from any dialect's
// deploymentResult, nil when the body has none. Pods are grouped by envName:
// an environment succeeded when all of its pods did.
func environmentOutcomes(t *testing.T, body string) map[string]bool {
	t.Helper()
	var b struct {
		DeploymentResult *struct {
			Success            bool `json:"success"`
			EnvironmentResults []struct {
				EnvironmentName string `json:"environmentName"`
				Success         bool   `json:"success"`
			} `json:"environmentResults"`
			DeploymentResults []struct {
				EnvironmentName string `json:"environmentName"`
				Success         bool   `json:"success"`
			} `json:"deploymentResults"`
			DetailList []struct {
				EnvName string `json:"envName"`
				Success bool   `json:"success"`
			} `json:"detailList"`
		} `json:"deploymentResult"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	dr := b.DeploymentResult
	if dr == nil {
		return nil
	}
	out := map[string]bool{}
	for _, e := range dr.EnvironmentResults {
		out[e.EnvironmentName] = e.Success
	}
	for _, e := range dr.DeploymentResults {
		out[e.EnvironmentName] = e.Success
	}
	for _, p := range dr.DetailList {
		ok, seen := out[p.EnvName]
		out[p.EnvName] = p.Success && (ok || !seen)
	}
	all := true
	for _, ok := range out {
		all = all && ok
	}
	if dr.Success != all {
		t.Errorf("deploymentResult.success = %v, environments %v", dr.Success, out)
	}
	return out
}

// TestDialectsAgree checks that every dialect reports the same environments
// with the same success for the same request and state, and ends in the same
// state: only the encoding differs. Where a dialect's source lacks what is asked
// (a deploying mTLS PATCH in seed and openapi, a keystore's deployment in
// openapi's answer), it reports nothing. docs, which has everything, goes first.
func TestDialectsAgree(t *testing.T) {
	t.Parallel()
	const mtls = `{"enabled":true,"keyStoreId":"{{id:client-2026}}","keyStoreName":"client-2026","trustStoreId":"{{id:trust-2026}}",` +
		`"trustStoreName":"trust-2026","deploy":true,"deployTargetEnvironmentNameList":["staging","production"]}`
	type state struct {
		Credential simulator.CredentialState
		Keystore   simulator.KeystoreState
		Proxy      simulator.MTLSSettings
	}
	for _, req := range []struct {
		name, method, path, body string
		// none: no dialect reports environments (an mTLS PATCH without deploy).
		none bool
	}{
		{name: "set secret key", method: "PUT", path: creds + "api-user/secretKey/partner-hmac-2026/"},
		{name: "remove truststore", method: "DELETE", path: creds + "partner-a/truststore/"},
		{name: "create keystore", method: "POST", path: keystores, body: keystoreBody(nil)},
		{name: "update keystore", method: "PUT", path: keystores + "client-2026/", body: `{"name":"client-2026-r"}`},
		{name: "delete keystore", method: "DELETE", path: keystores + "client-2026/"},
		{name: "mTLS with deploy", method: "PATCH", path: myProject + "apiProxies/MyAPI/settings/mtls/", body: mtls},
		{name: "mTLS without deploy", method: "PATCH", path: myProject + "apiProxies/MyAPI/settings/mtls/",
			body: strings.Replace(mtls, `"deploy":true`, `"deploy":false`, 1), none: true},
	} {
		for _, failing := range [][]string{nil, {"staging"}, {"production", "staging"}} {
			t.Run(fmt.Sprintf("%s/failing %v", req.name, failing), func(t *testing.T) {
				t.Parallel()
				var first map[string]bool
				var firstState state
				for _, d := range []simulator.Dialect{docsD, seedD, openapiD, mixedD} {
					sim, ts := startIn(t, d)
					sim.SetFaults(simulator.Faults{FailEnvironments: failing})
					res := call(t, ts, req.method, req.path, withIDs(t, sim, req.body, nil))
					if res.status != 200 {
						t.Fatalf("%s: %d %s", d, res.status, res.body)
					}
					got := environmentOutcomes(t, res.body)
					keystore := req.name == "create keystore" || req.name == "update keystore" || req.name == "delete keystore"
					switch {
					case keystore && d == openapiD, req.name == "mTLS with deploy" && (d == seedD || d == openapiD):
						if got != nil {
							t.Errorf("%s: environments %v, from a source that reports none: %s", d, got, res.body)
						}
					case d == docsD:
						first = got
					case !req.none && !reflect.DeepEqual(got, first):
						t.Errorf("%s: environments %v, docs dialect %v", d, got, first)
					}
					if req.none && got != nil {
						t.Errorf("%s: environments %v for a change that deployed nothing", d, got)
					}
					var st state
					st.Credential, _ = sim.Credential("MyProject", "api-user")
					st.Keystore, _ = sim.Keystore("MyProject", "client-2027")
					st.Proxy, _ = sim.Proxy("MyProject", "MyAPI")
					if d == docsD {
						firstState = st
					} else if !reflect.DeepEqual(st, firstState) {
						t.Errorf("%s: state %+v\ndocs dialect %+v", d, st, firstState)
					}
				}
				if !req.none {
					wantEnvs := map[string]bool{"production": !slices.Contains(failing, "production"), "staging": !slices.Contains(failing, "staging")}
					if !reflect.DeepEqual(first, wantEnvs) {
						t.Errorf("docs dialect: environments %v, want %v", first, wantEnvs)
					}
				}
			})
		}
	}
}
