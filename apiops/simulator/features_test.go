package simulator_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

func keystoreID(t *testing.T, sim *simulator.Server, name string) string {
	t.Helper()
	id, ok := sim.KeystoreID("MyProject", name)
	if !ok {
		t.Fatalf("KeystoreID(MyProject, %s): no such keystore", name)
	}
	if !idPattern.MatchString(id) {
		t.Fatalf("KeystoreID(MyProject, %s) = %q, want 24 lowercase hex digits", name, id)
	}
	return id
}

func TestKeystoreIDs(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	seen := map[string]string{}
	for _, name := range []string{"trust-2025", "trust-2026", "client-2025", "client-2026", "legacy-2019"} {
		id := keystoreID(t, sim, name)
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share id %s", name, other, id)
		}
		seen[id] = name
	}
	if _, ok := sim.KeystoreID("MyProject", "shared-trust-root"); ok {
		t.Error("an admin keystore has an id in MyProject")
	}
	if _, ok := sim.KeystoreID("NoSuch", "trust-2026"); ok {
		t.Error("a keystore of an unknown project has an id")
	}
	// The same seed gives the same ids, so demos and fixtures can rely on them.
	if again, _ := simulator.New(loadSeed(t)).KeystoreID("MyProject", "trust-2026"); again != keystoreID(t, sim, "trust-2026") {
		t.Errorf("a second simulator from the same seed gave trust-2026 id %s", again)
	}

	wantBody(t, call(t, ts, "POST", keystores, keystoreBody(nil)), 200, deployedMyProject)
	created := keystoreID(t, sim, "client-2027")
	if _, dup := seen[created]; dup {
		t.Fatalf("new keystore reuses id %s", created)
	}
	wantBody(t, call(t, ts, "PUT", keystores+"client-2027/", `{"description":"renewed"}`), 200, deployedMyProject)
	if id := keystoreID(t, sim, "client-2027"); id != created {
		t.Errorf("id after update = %s, want %s", id, created)
	}
	wantBody(t, call(t, ts, "PUT", keystores+"client-2027/", `{"name":"client-2027-r"}`), 200, deployedMyProject)
	if id := keystoreID(t, sim, "client-2027-r"); id != created {
		t.Errorf("id after rename = %s, want %s", id, created)
	}
	if _, ok := sim.KeystoreID("MyProject", "client-2027"); ok {
		t.Error("the old name still has an id after the rename")
	}
	wantBody(t, call(t, ts, "DELETE", keystores+"client-2027-r/", ""), 200, undeployedMyProject)
	if _, ok := sim.KeystoreID("MyProject", "client-2027-r"); ok {
		t.Error("a deleted keystore has an id")
	}
	wantBody(t, call(t, ts, "POST", keystores, keystoreBody(func(ks map[string]any, _ []map[string]any) {
		ks["name"] = "client-2027-r"
	})), 200, deployedMyProject)
	if id := keystoreID(t, sim, "client-2027-r"); id == created {
		t.Errorf("a keystore created again under a deleted one's name got its id %s", id)
	}
	// Deleted and created again: a new id again, even with the same history before.
	wantBody(t, call(t, ts, "DELETE", keystores+"legacy-2019/", ""), 200, undeployedMyProject)
	wantBody(t, call(t, ts, "POST", keystores, keystoreBody(func(ks map[string]any, _ []map[string]any) {
		ks["name"] = "legacy-2019"
	})), 200, deployedMyProject)
	if id := keystoreID(t, sim, "legacy-2019"); seen[id] == "legacy-2019" {
		t.Errorf("legacy-2019 kept its id %s through delete and create", id)
	}
}

func TestGetKeystore(t *testing.T) {
	t.Parallel()
	createBody := keystoreBody(nil)
	dto := `{"id":"{{id:client-2027}}","name":"client-2027","description":"2027 client","projectId":"` + hex24 + `","keyStoreEnvironmentList":[` +
		`{"environmentName":"production","alias":"client","keyStoreType":"PKCS12"},` +
		`{"environmentName":"staging","alias":"","keyStoreType":"JKS"}]}`
	for _, tc := range []struct {
		d    simulator.Dialect
		want string
	}{
		{seedD, `{"success":true,"resultList":[` + dto + `]}`},
		{docsD, `{"status":"SUCCESS","resultList":[` + dto + `],"resultCount":1}`},
		{openapiD, `{"status":"SUCCESS","resultList":[` + dto + `],"resultCount":1}`},
	} {
		t.Run(string(tc.d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, tc.d)
			if res := call(t, ts, "POST", keystores, createBody); res.status != 200 {
				t.Fatalf("create: %d %s", res.status, res.body)
			}
			wantJSON(t, call(t, ts, "GET", keystores+"client-2027/", ""), 200, withIDs(t, sim, tc.want, nil))
		})
	}
	t.Run("mixed", func(t *testing.T) {
		t.Parallel()
		_, ts := startIn(t, mixedD)
		if res := call(t, ts, "POST", keystores, createBody); res.status != 200 {
			t.Fatalf("create: %d %s", res.status, res.body)
		}
		res := call(t, ts, "GET", keystores+"client-2027/", "")
		var got struct {
			ResultList []struct {
				Environments []map[string]any `json:"keyStoreEnvironmentList"`
			} `json:"resultList"`
		}
		if err := json.Unmarshal([]byte(res.body), &got); err != nil || len(got.ResultList) != 1 || len(got.ResultList[0].Environments) != 2 {
			t.Fatalf("body %s: %v", res.body, err)
		}
		// The stored values are encrypted: never the password or file sent,
		// in base64 or not; and each environment's differ.
		sent := []map[string]string{
			{"file": base64Of(productionFile), "raw": string(productionFile), "password": "secret"},
			{"file": base64Of(stagingFile), "raw": string(stagingFile), "password": "secret2"},
		}
		body := res.body
		for i, env := range got.ResultList[0].Environments {
			file, _ := env["file"].(string)
			password, _ := env["password"].(string)
			if file == "" || password == "" || file == password {
				t.Errorf("environment %d: file %q, password %q: want distinct opaque values", i, file, password)
			}
			for _, s := range sent {
				for _, v := range s {
					if file == v || password == v {
						t.Errorf("environment %d reveals %q", i, v)
					}
				}
			}
			body = strings.Replace(body, `"`+file+`"`, `"<file>"`, 1)
			body = strings.Replace(body, `"`+password+`"`, `"<password>"`, 1)
		}
		if got.ResultList[0].Environments[0]["file"] == got.ResultList[0].Environments[1]["file"] {
			t.Error("two different files look the same")
		}
		res.body = body
		wantJSON(t, res, 200, `{"status":"SUCCESS","resultList":[{"name":"client-2027","description":"2027 client","projectId":"`+hex24+`",`+
			`"keyStoreEnvironmentList":[`+
			`{"environmentId":"`+hex24+`","file":"<file>","password":"<password>","alias":"client","keyStoreType":"PKCS12"},`+
			`{"environmentId":"`+hex24+`","file":"<file>","password":"<password>","alias":"","keyStoreType":"JKS"}]}]}`)
	})
	for _, d := range simulator.Dialects() {
		t.Run("missing/"+string(d), func(t *testing.T) {
			t.Parallel()
			_, ts := startIn(t, d)
			for _, name := range []string{"nope", "shared-trust-root", "CLIENT-2026"} {
				res := call(t, ts, "GET", keystores+name+"/", "")
				text := "Keystore (name: " + name + ") is not found!"
				if d == seedD {
					wantError(t, res, 400, "bad_request", text)
				} else {
					wantJSON(t, res, 400, `{"status":"FAILURE","resultMessage":"`+text+`"}`)
				}
			}
		})
	}
}

func TestMTLSKeystoreReferences(t *testing.T) {
	t.Parallel()
	const path = myProject + "apiProxies/MyAPI/settings/mtls/"
	type refs struct{ ksID, ksName, tsID, tsName string }
	// Placeholders {{id:NAME}} in bodies and in want are MyProject keystore ids.
	for _, tc := range []struct {
		name string
		d    simulator.Dialect
		body string
		err  string // the 400's text; "" for success
		want refs
	}{
		// seed: ids taken as given; a real one is resolved to its name.
		{name: "seed takes any id", d: seedD, body: `{"enabled":true,"keyStoreId":"client-2026","trustStoreId":"whatever"}`,
			want: refs{ksID: "client-2026", tsID: "whatever"}},
		{name: "seed resolves a real id", d: seedD, body: `{"enabled":true,"keyStoreId":"{{id:client-2026}}"}`,
			want: refs{ksID: "{{id:client-2026}}", ksName: "client-2026"}},
		{name: "seed ignores names", d: seedD, body: `{"enabled":true,"keyStoreName":"client-2026"}`,
			err: "KeyStore ID is required when mTLS is enabled"},

		{name: "docs takes ids", d: docsD, body: `{"enabled":true,"keyStoreId":"{{id:client-2026}}","trustStoreId":"{{id:trust-2026}}"}`,
			want: refs{ksID: "{{id:client-2026}}", ksName: "client-2026", tsID: "{{id:trust-2026}}", tsName: "trust-2026"}},
		{name: "docs ignores names", d: docsD, body: `{"enabled":true,"keyStoreName":"client-2026","keyStoreID":"{{id:client-2026}}"}`,
			err: "KeyStore ID is required when mTLS is enabled"},
		{name: "docs refuses a name as id", d: docsD, body: `{"enabled":true,"keyStoreId":"client-2026"}`,
			err: "KeyStore (id: client-2026) is not found!"},
		{name: "docs refuses an unknown truststore id", d: docsD,
			body: `{"enabled":true,"keyStoreId":"{{id:client-2026}}","trustStoreId":"0123456789abcdef01234567"}`,
			err:  "TrustStore (id: 0123456789abcdef01234567) is not found!"},

		{name: "openapi takes names", d: openapiD, body: `{"enabled":true,"keyStoreName":"client-2026","trustStoreName":"trust-2026"}`,
			want: refs{ksID: "{{id:client-2026}}", ksName: "client-2026", tsID: "{{id:trust-2026}}", tsName: "trust-2026"}},
		{name: "openapi ignores ids", d: openapiD, body: `{"enabled":true,"keyStoreId":"{{id:client-2026}}"}`,
			err: "KeyStore name is required when mTLS is enabled"},
		{name: "openapi refuses an unknown name", d: openapiD, body: `{"enabled":true,"keyStoreName":"client-2099"}`,
			err: "KeyStore (name: client-2099) is not found!"},
		{name: "openapi refuses another project's keystore", d: openapiD, body: `{"enabled":true,"keyStoreName":"shared-trust-root"}`,
			err: "KeyStore (name: shared-trust-root) is not found!"},
		{name: "openapi refuses an unknown truststore name", d: openapiD,
			body: `{"enabled":true,"keyStoreName":"client-2026","trustStoreName":"Trust-2026"}`,
			err:  "TrustStore (name: Trust-2026) is not found!"},

		{name: "mixed takes names", d: mixedD, body: `{"enabled":true,"keyStoreName":"client-2025","keyStoreId":"ignored"}`,
			want: refs{ksID: "{{id:client-2025}}", ksName: "client-2025"}},
		{name: "mixed ignores ids", d: mixedD, body: `{"enabled":true,"keyStoreId":"{{id:client-2026}}"}`,
			err: "KeyStore name is required when mTLS is enabled"},
		{name: "mixed refuses an unknown name", d: mixedD, body: `{"enabled":true,"keyStoreName":"nope"}`,
			err: "KeyStore (name: nope) is not found!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, tc.d)
			res := call(t, ts, "PATCH", path, withIDs(t, sim, tc.body, nil))
			got, _ := sim.Proxy("MyProject", "MyAPI")
			if tc.err != "" {
				if tc.d == seedD {
					wantError(t, res, 400, "bad_request", tc.err)
				} else {
					wantJSON(t, res, 400, `{"status":"FAILURE","resultMessage":"`+tc.err+`"}`)
				}
				if !reflect.DeepEqual(got, simulator.MTLSSettings{}) {
					t.Errorf("refused PATCH changed the proxy: %+v", got)
				}
				return
			}
			if res.status != 200 {
				t.Fatalf("%d %s", res.status, res.body)
			}
			want := simulator.MTLSSettings{
				Enabled:    true,
				KeyStoreID: withIDs(t, sim, tc.want.ksID, nil), KeyStoreName: tc.want.ksName,
				TrustStoreID: withIDs(t, sim, tc.want.tsID, nil), TrustStoreName: tc.want.tsName,
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Proxy = %+v\nwant  %+v", got, want)
			}
		})
	}
}

func TestMTLSSettings(t *testing.T) {
	t.Parallel()
	const payments = myProject + "apiProxies/PaymentsAPI/settings/mtls/"
	t.Run("clearing the keystore", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			d    simulator.Dialect
			body string
			err  string
		}{
			{seedD, `{"keyStoreId":""}`, "KeyStore ID is required when mTLS is enabled"},
			{docsD, `{"keyStoreId":""}`, "KeyStore ID is required when mTLS is enabled"},
			{openapiD, `{"keyStoreName":""}`, "KeyStore name is required when mTLS is enabled"},
			{mixedD, `{"keyStoreName":""}`, "KeyStore name is required when mTLS is enabled"},
		} {
			_, ts := startIn(t, tc.d)
			res := call(t, ts, "PATCH", payments, tc.body)
			if res.status != 400 || !strings.Contains(res.body, tc.err) {
				t.Errorf("%s: %d %s, want 400 %q", tc.d, res.status, res.body, tc.err)
			}
			// The seed's keystore, given only by id, still counts as set.
			if res := call(t, ts, "PATCH", payments, `{"hostnameVerifierType":"DEFAULT"}`); res.status != 200 {
				t.Errorf("%s: %d %s", tc.d, res.status, res.body)
			}
			if res := call(t, ts, "PATCH", payments, `{"enabled":false,`+tc.body[1:]); res.status != 200 {
				t.Errorf("%s: disabling and clearing: %d %s", tc.d, res.status, res.body)
			}
		}
	})
	t.Run("SSL validation", func(t *testing.T) {
		t.Parallel()
		for _, d := range simulator.Dialects() {
			sim, ts := startIn(t, d)
			known := d == docsD || d == mixedD // the others' PATCH has no such field
			for _, v := range []bool{true, false} {
				body, _ := json.Marshal(map[string]any{"enabled": true, "disableSslValidation": v})
				if res := call(t, ts, "PATCH", payments, string(body)); res.status != 200 {
					t.Errorf("%s: %d %s", d, res.status, res.body)
				}
				if got, _ := sim.Proxy("MyProject", "PaymentsAPI"); got.DisableSSLValidation != (v && known) || got.HostnameVerifierType != "STRICT" {
					t.Errorf("%s: after disableSslValidation %v: %+v", d, v, got)
				}
			}
			if res := call(t, ts, "PATCH", payments, `{"disableSslValidation":"yes"}`); known != (res.status == 400) {
				t.Errorf("%s: disableSslValidation \"yes\": %d %s", d, res.status, res.body)
			}
		}
	})
	t.Run("AI proxy", func(t *testing.T) {
		t.Parallel()
		for _, d := range simulator.Dialects() {
			sim, ts := startIn(t, d)
			res := call(t, ts, "PATCH", myProject+"apiProxies/AssistantAPI/settings/mtls/", `{"enabled":false}`)
			if res.status != 400 || !strings.Contains(res.body, "ApiProxy (name: AssistantAPI) is of type AI") {
				t.Errorf("%s: %d %s, want 400 naming the AI proxy", d, res.status, res.body)
			}
			if got, _ := sim.Proxy("MyProject", "AssistantAPI"); !reflect.DeepEqual(got, simulator.MTLSSettings{Type: "AI"}) {
				t.Errorf("%s: AI proxy = %+v", d, got)
			}
		}
	})
	t.Run("deploy", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name, body, err string
		}{
			{"without environments", `{"deploy":true}`, "deployTargetEnvironmentNameList is required when deploy is true"},
			{"empty environments", `{"deploy":true,"deployTargetEnvironmentNameList":[]}`, "deployTargetEnvironmentNameList is required when deploy is true"},
			{"unknown environment", `{"deploy":true,"deployTargetEnvironmentNameList":["production","test"]}`, "Environment (name: test) was not found!"},
			{"empty environment", `{"deploy":true,"deployTargetEnvironmentNameList":["production",""]}`, "deployTargetEnvironmentNameList[1] must not be empty"},
			{"environment twice", `{"deploy":true,"deployTargetEnvironmentNameList":["staging","staging"]}`,
				"Environment (name: staging) is listed more than once in deployTargetEnvironmentNameList"},
			{"not a bool", `{"deploy":"true","deployTargetEnvironmentNameList":["staging"]}`, "Invalid request body: deploy must not be a JSON string"},
		} {
			for _, d := range []simulator.Dialect{docsD, mixedD} {
				sim, ts := startIn(t, d)
				res := call(t, ts, "PATCH", payments, strings.Replace(tc.body, "{", `{"hostnameVerifierType":"NOOP",`, 1))
				if res.status != 400 || !strings.Contains(res.body, tc.err) {
					t.Errorf("%s %s: %d %s, want 400 %q", tc.name, d, res.status, res.body, tc.err)
				}
				if got, _ := sim.Proxy("MyProject", "PaymentsAPI"); got.HostnameVerifierType != "STRICT" {
					t.Errorf("%s %s: refused PATCH was saved: %+v", tc.name, d, got)
				}
			}
		}
		// Without deploy the environments are not looked at, and nothing is deployed.
		_, ts := startIn(t, docsD)
		wantBody(t, call(t, ts, "PATCH", payments, `{"deploy":false,"deployTargetEnvironmentNameList":["qa"]}`), 200, `{"status":"SUCCESS"}`)
		// Exactly the environments asked for, in the order asked.
		wantBody(t, call(t, ts, "PATCH", "/apiops/projects/TeamA/apiProxies/OrdersAPI/settings/mtls/",
			`{"deploy":true,"deployTargetEnvironmentNameList":["test","production"]}`), 200,
			`{"status":"SUCCESS","deploymentResult":{"success":true,"message":"Deployment completed successfully","environmentResults":[`+
				`{"environmentName":"test","success":true,"message":"Deployed successfully"},`+
				`{"environmentName":"production","success":true,"message":"Deployed successfully"}]}}`)
		// The pages we started from and openapi.yaml know no deploy: such a server saves
		// and ignores it, even when it is malformed.
		for _, d := range []simulator.Dialect{seedD, openapiD} {
			sim, ts := startIn(t, d)
			res := call(t, ts, "PATCH", payments, `{"hostnameVerifierType":"NOOP","deploy":"yes","deployTargetEnvironmentNameList":["qa"]}`)
			if got, _ := sim.Proxy("MyProject", "PaymentsAPI"); res.status != 200 || strings.Contains(res.body, "environment") || got.HostnameVerifierType != "NOOP" {
				t.Errorf("%s: %d %s; %+v", d, res.status, res.body, got)
			}
		}
	})
}

func TestMoreCredentialSecrets(t *testing.T) {
	t.Parallel()
	unchanged := credentialIs("MyProject", "api-user", simulator.CredentialState{})
	runCases(t, []apiCase{
		{
			name: "set public key", method: "PUT", path: creds + "api-user/publicKey/partner-pub-2026/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "api-user", simulator.CredentialState{PublicKey: "partner-pub-2026"}),
		},
		{
			name: "set secret key", method: "PUT", path: creds + "partner-a/secretKey/partner-hmac-2026/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "partner-a",
				partnerA(func(c *simulator.CredentialState) { c.SecretKey = "partner-hmac-2026" })),
		},
		{
			name: "set certificate", method: "PUT", path: creds + "api-user/certificate/partner-cert-2026/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "api-user", simulator.CredentialState{Certificate: "partner-cert-2026"}),
		},
		{
			name: "set certificate from the admin project", method: "PUT", path: creds + "api-user/certificate/shared-root-ca/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "api-user", simulator.CredentialState{Certificate: "shared-root-ca"}),
		},
		{
			name: "public key that is a secret key", method: "PUT", path: creds + "api-user/publicKey/partner-hmac-2026/",
			status: 400, code: "bad_request", desc: "Key (name: partner-hmac-2026) is not found!", check: unchanged,
		},
		{
			name: "secret key that is a public key", method: "PUT", path: creds + "api-user/secretKey/partner-pub-2026/",
			status: 400, code: "bad_request", desc: "Secret Key (name: partner-pub-2026) is not found!", check: unchanged,
		},
		{
			name: "unknown certificate", method: "PUT", path: creds + "api-user/certificate/partner-key-2026/",
			status: 400, code: "bad_request", desc: "Certificate (name: partner-key-2026) is not found!", check: unchanged,
		},
		{
			name: "certificate of another project", method: "PUT", path: "/apiops/projects/TeamA/credentials/svc-orders/certificate/partner-cert-2026/",
			status: 400, code: "bad_request", desc: "Certificate (name: partner-cert-2026) is not found!",
		},
		{
			name: "remove seeded secret key", method: "DELETE", path: creds + "partner-a/secretKey/",
			status: 200, want: undeployedMyProject,
			check: credentialIs("MyProject", "partner-a", partnerA(func(c *simulator.CredentialState) { c.SecretKey = "" })),
		},
		{
			name: "remove seeded certificate", method: "DELETE", path: creds + "partner-a/certificate/",
			status: 200, want: undeployedMyProject,
			check: credentialIs("MyProject", "partner-a", partnerA(func(c *simulator.CredentialState) { c.Certificate = "" })),
		},
		{
			name: "remove absent secret key", method: "DELETE", path: creds + "api-user/secretKey/",
			status: 400, code: "bad_request", desc: "Credential (username: api-user) has no secret key assigned!",
		},
		{
			name: "remove absent public key", method: "DELETE", path: creds + "api-user/publicKey/",
			status: 400, code: "bad_request", desc: "Credential (username: api-user) has no public key assigned!",
		},
		{
			name: "remove absent certificate", method: "DELETE", path: creds + "api-user/certificate/",
			status: 400, code: "bad_request", desc: "Credential (username: api-user) has no certificate assigned!",
		},
		{
			name: "unknown credential", method: "DELETE", path: creds + "nobody/certificate/",
			status: 400, code: "bad_request", desc: "Credential (username: nobody) was not found!",
		},
	})

	t.Run("set and remove", func(t *testing.T) {
		t.Parallel()
		sim, ts := start(t)
		for _, path := range []string{"publicKey/partner-pub-2026/", "secretKey/partner-hmac-2026/", "certificate/partner-cert-2026/"} {
			wantBody(t, call(t, ts, "PUT", creds+"partner-b/"+path, ""), 200, deployedMyProject)
		}
		credentialIs("MyProject", "partner-b", simulator.CredentialState{Truststore: "trust-2025",
			PublicKey: "partner-pub-2026", SecretKey: "partner-hmac-2026", Certificate: "partner-cert-2026"})(t, sim)
		for _, kind := range []string{"publicKey", "secretKey", "certificate"} {
			wantBody(t, call(t, ts, "DELETE", creds+"partner-b/"+kind+"/", ""), 200, undeployedMyProject)
		}
		credentialIs("MyProject", "partner-b", simulator.CredentialState{Truststore: "trust-2025"})(t, sim)
	})

	// Today's pages word the refusal differently.
	for _, d := range []simulator.Dialect{docsD, openapiD, mixedD} {
		t.Run("remove absent/"+string(d), func(t *testing.T) {
			t.Parallel()
			_, ts := startIn(t, d)
			for kind, title := range map[string]string{
				"secretKey": "Secret Key", "publicKey": "Public Key", "certificate": "Certificate",
				"keystore": "Keystore", "truststore": "Truststore", "privateKey": "Private Key",
			} {
				wantJSON(t, call(t, ts, "DELETE", creds+"api-user/"+kind+"/", ""), 400,
					`{"status":"FAILURE","resultMessage":"Credential (username: api-user) does not have a `+title+` assigned!"}`)
			}
		})
	}
}

// TestUnknownMembers checks that every dialect ignores members it does not
// know, and that names match exactly, as a Spring server's would.
func TestUnknownMembers(t *testing.T) {
	t.Parallel()
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, d)
			create := keystoreBody(func(ks map[string]any, envs []map[string]any) {
				ks["Name"] = "other"
				ks["jwkList"] = []any{map[string]any{"kid": 1}}
				envs[0]["environmentId"] = "e1"
				envs[0]["PASSWORD"] = "not this"
			})
			if res := call(t, ts, "POST", keystores, create); res.status != 200 {
				t.Fatalf("create: %d %s", res.status, res.body)
			}
			ks, ok := sim.Keystore("MyProject", "client-2027")
			if !ok || ks.Environments[0].Password != "secret" {
				t.Fatalf("Keystore = %+v, %v", ks, ok)
			}
			if _, ok := sim.Keystore("MyProject", "other"); ok {
				t.Error(`"Name" was taken for "name"`)
			}

			// Both spellings of the keystore in every dialect, plus members
			// no dialect knows, some differing only in case from known ones.
			body := withIDs(t, sim, `{"enabled":true,"keyStoreId":"{{id:client-2026}}","keyStoreName":"client-2026",`+
				`"Enabled":false,"HostnameVerifierType":"NOOP","connectionPoolSize":5,"routing":{"x":1}}`, nil)
			if res := call(t, ts, "PATCH", myProject+"apiProxies/MyAPI/settings/mtls/", body); res.status != 200 {
				t.Fatalf("PATCH: %d %s", res.status, res.body)
			}
			got, _ := sim.Proxy("MyProject", "MyAPI")
			want := simulator.MTLSSettings{Enabled: true, KeyStoreID: keystoreID(t, sim, "client-2026"), KeyStoreName: "client-2026"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Proxy = %+v\nwant %+v", got, want)
			}
			// Members differing from known ones only in case change nothing:
			// clearing PaymentsAPI's keystore would be refused.
			before, _ := sim.Proxy("MyProject", "PaymentsAPI")
			res := call(t, ts, "PATCH", myProject+"apiProxies/PaymentsAPI/settings/mtls/",
				`{"keyStoreID":"","KeyStoreName":"","keystoreid":"","ENABLED":false}`)
			if res.status != 200 {
				t.Errorf("PaymentsAPI: %d %s", res.status, res.body)
			}
			if after, _ := sim.Proxy("MyProject", "PaymentsAPI"); !reflect.DeepEqual(after, before) {
				t.Errorf("PaymentsAPI = %+v, was %+v", after, before)
			}
		})
	}
}
