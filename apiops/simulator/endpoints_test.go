package simulator_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

const (
	myProject = "/apiops/projects/MyProject/"
	creds     = myProject + "credentials/"
	keystores = myProject + "keystores/"
)

func TestCredentialEndpoints(t *testing.T) {
	t.Parallel()
	unchanged := credentialIs("MyProject", "api-user", simulator.CredentialState{})
	runCases(t, []apiCase{
		{
			name: "set truststore", method: "PUT", path: creds + "api-user/truststore/trust-2026/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "api-user", simulator.CredentialState{Truststore: "trust-2026"}),
		},
		{
			name: "set truststore from the admin project", method: "PUT", path: creds + "api-user/truststore/shared-trust-root/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "api-user", simulator.CredentialState{Truststore: "shared-trust-root"}),
		},
		{
			name: "set truststore replaces the old one", method: "PUT", path: creds + "partner-a/truststore/trust-2026/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "partner-a",
				partnerA(func(c *simulator.CredentialState) { c.Truststore = "trust-2026" })),
		},
		{
			name: "set keystore", method: "PUT", path: creds + "api-user/keystore/client-2026/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "api-user", simulator.CredentialState{Keystore: "client-2026"}),
		},
		{
			name: "set keystore replaces the old one", method: "PUT", path: creds + "partner-a/keystore/client-2026/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "partner-a",
				partnerA(func(c *simulator.CredentialState) { c.Keystore = "client-2026" })),
		},
		{
			name: "set private key", method: "PUT", path: creds + "api-user/privateKey/partner-key-2026/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "api-user", simulator.CredentialState{PrivateKey: "partner-key-2026"}),
		},
		{
			name: "set private key from the admin project", method: "PUT", path: creds + "partner-a/privateKey/shared-private-key/",
			status: 200, want: deployedMyProject,
			check: credentialIs("MyProject", "partner-a",
				partnerA(func(c *simulator.CredentialState) { c.PrivateKey = "shared-private-key" })),
		},
		{
			name: "set in another project", method: "PUT", path: "/apiops/projects/TeamA/credentials/svc-orders/truststore/team-a-trust/",
			status: 200, want: deployedTeamA,
			check: credentialIs("TeamA", "svc-orders", simulator.CredentialState{Truststore: "team-a-trust"}),
		},
		{
			name: "remove truststore", method: "DELETE", path: creds + "partner-b/truststore/",
			status: 200, want: undeployedMyProject,
			check: credentialIs("MyProject", "partner-b", simulator.CredentialState{}),
		},
		{
			name: "remove keystore", method: "DELETE", path: creds + "partner-a/keystore/",
			status: 200, want: undeployedMyProject,
			check: credentialIs("MyProject", "partner-a",
				partnerA(func(c *simulator.CredentialState) { c.Keystore = "" })),
		},
		{
			name: "remove private key", method: "DELETE", path: creds + "partner-a/privateKey/",
			status: 200, want: undeployedMyProject,
			check: credentialIs("MyProject", "partner-a",
				partnerA(func(c *simulator.CredentialState) { c.PrivateKey = "" })),
		},
		{
			name: "unknown keystore", method: "PUT", path: creds + "api-user/keystore/nope/",
			status: 400, code: "bad_request", desc: "Keystore (name: nope) is not found!", check: unchanged,
		},
		{
			name: "unknown truststore", method: "PUT", path: creds + "api-user/truststore/nope/",
			status: 400, code: "bad_request", desc: "Truststore (name: nope) is not found!", check: unchanged,
		},
		{
			name: "truststore names are case-sensitive", method: "PUT", path: creds + "api-user/truststore/TRUST-2026/",
			status: 400, code: "bad_request", desc: "Truststore (name: TRUST-2026) is not found!", check: unchanged,
		},
		{
			name: "truststore of another project", method: "PUT", path: creds + "api-user/truststore/team-a-trust/",
			status: 400, code: "bad_request", desc: "Truststore (name: team-a-trust) is not found!", check: unchanged,
		},
		{
			name: "unknown private key", method: "PUT", path: creds + "api-user/privateKey/nope/",
			status: 400, code: "bad_request", desc: "Key (name: nope) is not found!", check: unchanged,
		},
		{
			name: "key that is not a private key", method: "PUT", path: creds + "partner-a/privateKey/partner-cert-2026/",
			status: 400, code: "bad_request", desc: "Key (name: partner-cert-2026) is not found!",
			check: credentialIs("MyProject", "partner-a", partnerA(nil)),
		},
		{
			name: "private key of another project", method: "PUT", path: creds + "api-user/privateKey/team-a-key/",
			status: 400, code: "bad_request", desc: "Key (name: team-a-key) is not found!", check: unchanged,
		},
		{
			name: "remove absent keystore", method: "DELETE", path: creds + "api-user/keystore/",
			status: 400, code: "bad_request", desc: "Credential (username: api-user) has no keystore assigned!",
		},
		{
			name: "remove absent truststore", method: "DELETE", path: creds + "api-user/truststore/",
			status: 400, code: "bad_request", desc: "Credential (username: api-user) has no truststore assigned!",
		},
		{
			name: "remove absent private key", method: "DELETE", path: creds + "partner-b/privateKey/",
			status: 400, code: "bad_request", desc: "Credential (username: partner-b) has no private key assigned!",
			check: credentialIs("MyProject", "partner-b", simulator.CredentialState{Truststore: "trust-2025"}),
		},
		{
			name: "unknown credential", method: "PUT", path: creds + "nobody/truststore/trust-2026/",
			status: 400, code: "bad_request", desc: "Credential (username: nobody) was not found!",
		},
		{
			name: "unknown credential on remove", method: "DELETE", path: creds + "nobody/privateKey/",
			status: 400, code: "bad_request", desc: "Credential (username: nobody) was not found!",
		},
		{
			name: "credential names are case-sensitive", method: "PUT", path: creds + "API-USER/truststore/trust-2026/",
			status: 400, code: "bad_request", desc: "Credential (username: API-USER) was not found!", check: unchanged,
		},
		{
			name: "credential is checked before the keystore", method: "PUT", path: creds + "nobody/keystore/nope/",
			status: 400, code: "bad_request", desc: "Credential (username: nobody) was not found!",
		},
		{
			name: "unknown project", method: "PUT", path: "/apiops/projects/NoSuch/credentials/api-user/truststore/trust-2026/",
			status: 404, code: "not_found", desc: "Project(NoSuch) was not found or user does not have privilege to access it!",
		},
		{
			name: "project names are case-sensitive", method: "DELETE", path: "/apiops/projects/myproject/credentials/partner-b/truststore/",
			status: 404, code: "not_found", desc: "Project(myproject) was not found or user does not have privilege to access it!",
			check: credentialIs("MyProject", "partner-b", simulator.CredentialState{Truststore: "trust-2025"}),
		},
	})
}

func TestRouting(t *testing.T) {
	t.Parallel()
	runCases(t, []apiCase{
		{
			name: "unknown path", method: "GET", path: myProject + "unknown/",
			status: 404, code: "not_found", desc: "No endpoint for GET /apiops/projects/MyProject/unknown/",
		},
		{
			name: "missing trailing slash", method: "PUT", path: creds + "api-user/truststore/trust-2026",
			status: 404, code: "not_found", desc: "No endpoint for PUT /apiops/projects/MyProject/credentials/api-user/truststore/trust-2026",
			check: credentialIs("MyProject", "api-user", simulator.CredentialState{}),
		},
		{
			name: "missing trailing slash with another method", method: "GET", path: creds + "partner-b/truststore",
			status: 404, code: "not_found", desc: "No endpoint for GET /apiops/projects/MyProject/credentials/partner-b/truststore",
		},
		{
			name: "extra segment", method: "PUT", path: creds + "api-user/truststore/trust-2026/extra/",
			status: 404, code: "not_found", desc: "No endpoint for PUT /apiops/projects/MyProject/credentials/api-user/truststore/trust-2026/extra/",
		},
		{
			name: "empty name", method: "DELETE", path: creds + "/truststore/",
			status: 404, code: "not_found", desc: "No endpoint for DELETE /apiops/projects/MyProject/credentials//truststore/",
		},
		{
			name: "dot segments are not cleaned", method: "PUT", path: creds + "x/../api-user/truststore/trust-2026/",
			status: 404, code: "not_found", desc: "No endpoint for PUT /apiops/projects/MyProject/credentials/x/../api-user/truststore/trust-2026/",
			check: credentialIs("MyProject", "api-user", simulator.CredentialState{}),
		},
		{
			name: "wrong method on set", method: "GET", path: creds + "api-user/truststore/trust-2026/",
			status: 405, code: "method_not_allowed", desc: "Method GET is not allowed; use PUT", allow: "PUT",
		},
		{
			name: "wrong method on remove", method: "PUT", path: creds + "partner-b/truststore/",
			status: 405, code: "method_not_allowed", desc: "Method PUT is not allowed; use DELETE", allow: "DELETE",
			check: credentialIs("MyProject", "partner-b", simulator.CredentialState{Truststore: "trust-2025"}),
		},
		{
			name: "wrong method on a keystore", method: "POST", path: keystores + "trust-2026/",
			status: 405, code: "method_not_allowed", desc: "Method POST is not allowed; use DELETE, GET, HEAD, PUT",
			allow: "DELETE, GET, HEAD, PUT",
		},
		{
			name: "wrong method on keystores", method: "DELETE", path: keystores,
			status: 405, code: "method_not_allowed", desc: "Method DELETE is not allowed; use GET, HEAD, POST", allow: "GET, HEAD, POST",
		},
		{
			name: "wrong method on mTLS", method: "PUT", path: myProject + "apiProxies/MyAPI/settings/mtls/", body: `{}`,
			status: 405, code: "method_not_allowed", desc: "Method PUT is not allowed; use PATCH", allow: "PATCH",
		},
	})
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	setTruststore := creds + "api-user/truststore/trust-2026/"
	for _, tc := range []struct {
		name, auth, method, path string
	}{
		{"no header", "", "PUT", setTruststore},
		{"wrong token", "Bearer other-token", "PUT", setTruststore},
		{"token prefix", "Bearer sim-tok", "PUT", setTruststore},
		{"empty token", "Bearer ", "PUT", setTruststore},
		{"other scheme", "Basic " + token, "PUT", setTruststore},
		{"no scheme", token, "PUT", setTruststore},
		{"before not found", "", "GET", "/nowhere"},
		{"before method not allowed", "Bearer nope", "GET", setTruststore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim, ts := start(t)
			res, err := send(t, ts, tc.auth, tc.method, tc.path, "")
			if err != nil {
				t.Fatal(err)
			}
			wantError(t, res, 401, "unauthorized_client", "Invalid token")
			credentialIs("MyProject", "api-user", simulator.CredentialState{})(t, sim)
		})
	}
	t.Run("scheme is case-insensitive", func(t *testing.T) {
		t.Parallel()
		_, ts := start(t)
		res, err := send(t, ts, "bearer "+token, "PUT", setTruststore, "")
		if err != nil {
			t.Fatal(err)
		}
		wantBody(t, res, 200, deployedMyProject)
	})
}

func TestSetToken(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	sim.SetToken("rotated")
	path := creds + "api-user/truststore/trust-2026/"
	wantError(t, call(t, ts, "PUT", path, ""), 401, "unauthorized_client", "Invalid token")
	res, err := send(t, ts, "Bearer rotated", "PUT", path, "")
	if err != nil {
		t.Fatal(err)
	}
	wantBody(t, res, 200, deployedMyProject)
}

// keystoreBody is a valid create body, after edit changes it.
func keystoreBody(edit func(ks map[string]any, envs []map[string]any)) string {
	envs := []map[string]any{
		{"environmentName": "production", "file": base64Of(productionFile), "password": "secret", "alias": "client", "keyStoreType": "PKCS12"},
		{"environmentName": "staging", "file": base64Of(stagingFile), "password": "secret2", "keyStoreType": "JKS"},
	}
	ks := map[string]any{"name": "client-2027", "description": "2027 client", "keyStoreEnvironmentList": envs}
	if edit != nil {
		edit(ks, envs)
	}
	b, err := json.Marshal(ks)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestCreateKeystore(t *testing.T) {
	t.Parallel()
	notCreated := keystoreExists("MyProject", "client-2027", false)
	bad := func(name, body, desc string) apiCase {
		return apiCase{
			name: name, method: "POST", path: keystores, body: body,
			status: 400, code: "bad_request", desc: desc, check: notCreated,
		}
	}
	runCases(t, []apiCase{
		{
			name: "create", method: "POST", path: keystores, body: keystoreBody(nil),
			status: 200, want: deployedMyProject,
			check: func(t *testing.T, sim *simulator.Server) {
				want := simulator.KeystoreState{
					Name:        "client-2027",
					Description: "2027 client",
					Environments: []simulator.KeystoreEnvironment{
						{EnvironmentName: "production", File: productionFile, Password: "secret", Alias: "client", KeyStoreType: "PKCS12"},
						{EnvironmentName: "staging", File: stagingFile, Password: "secret2", KeyStoreType: "JKS"},
					},
				}
				if got, ok := sim.Keystore("MyProject", "client-2027"); !ok || !reflect.DeepEqual(got, want) {
					t.Errorf("Keystore = %+v, %v\nwant %+v", got, ok, want)
				}
			},
		},
		{
			name: "create for one environment", method: "POST", path: "/apiops/projects/TeamA/keystores/",
			body: keystoreBody(func(ks map[string]any, envs []map[string]any) {
				envs[0]["environmentName"] = "test"
				ks["keyStoreEnvironmentList"] = envs[:1]
				delete(ks, "description")
			}),
			status: 200, want: deployedTeamA,
			check: keystoreExists("TeamA", "client-2027", true),
		},
		{
			name: "name of an admin keystore", method: "POST", path: keystores,
			body:   keystoreBody(func(ks map[string]any, _ []map[string]any) { ks["name"] = "shared-trust-root" }),
			status: 200, want: deployedMyProject,
			check: keystoreExists("MyProject", "shared-trust-root", true),
		},
		{
			name: "unknown project", method: "POST", path: "/apiops/projects/NoSuch/keystores/", body: "{",
			status: 404, code: "not_found", desc: "Project(NoSuch) was not found or user does not have privilege to access it!",
		},
		bad("empty body", "", "Request body is empty; a JSON object is required"),
		bad("invalid JSON", `{"name":`, "Invalid request body: unexpected end of JSON input"),
		bad("trailing data", `{} {}`, "Invalid request body: invalid character '{' after top-level value"),
		bad("not an object", `[]`, "Invalid request body: a JSON object is required"),
		bad("wrong type", `{"name":5}`, "Invalid request body: name must not be a JSON number"),
		{
			name: "unknown members are ignored", method: "POST", path: keystores,
			body: keystoreBody(func(ks map[string]any, envs []map[string]any) {
				ks["color"] = "red"
				envs[1]["fileName"] = "x.jks"
			}),
			status: 200, want: deployedMyProject,
			check: func(t *testing.T, sim *simulator.Server) {
				got, ok := sim.Keystore("MyProject", "client-2027")
				if !ok || len(got.Environments) != 2 || !bytes.Equal(got.Environments[1].File, stagingFile) {
					t.Errorf("Keystore = %+v, %v", got, ok)
				}
			},
		},
		// A member whose name differs only in case is unknown, so the list is missing.
		bad("field name in other case", keystoreBody(func(ks map[string]any, _ []map[string]any) {
			ks["keystoreEnvironmentList"] = ks["keyStoreEnvironmentList"]
			delete(ks, "keyStoreEnvironmentList")
		}), "keyStoreEnvironmentList is required"),
		bad("missing name", keystoreBody(func(ks map[string]any, _ []map[string]any) { delete(ks, "name") }),
			"name is required"),
		bad("empty name", keystoreBody(func(ks map[string]any, _ []map[string]any) { ks["name"] = "" }),
			"name is required"),
		bad("missing environment list", keystoreBody(func(ks map[string]any, _ []map[string]any) {
			delete(ks, "keyStoreEnvironmentList")
		}), "keyStoreEnvironmentList is required"),
		bad("null environment list", keystoreBody(func(ks map[string]any, _ []map[string]any) {
			ks["keyStoreEnvironmentList"] = nil
		}), "keyStoreEnvironmentList is required"),
		bad("empty environment list", keystoreBody(func(ks map[string]any, _ []map[string]any) {
			ks["keyStoreEnvironmentList"] = []any{}
		}), "keyStoreEnvironmentList must not be empty"),
		bad("missing environment name", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			delete(envs[0], "environmentName")
		}), "keyStoreEnvironmentList[0].environmentName is required"),
		bad("unknown environment", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			envs[1]["environmentName"] = "test"
		}), "Environment (name: test) was not found!"),
		bad("environment names are case-sensitive", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			envs[0]["environmentName"] = "Production"
		}), "Environment (name: Production) was not found!"),
		bad("environment listed twice", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			envs[1]["environmentName"] = "production"
		}), "Environment (name: production) is listed more than once in keyStoreEnvironmentList"),
		bad("file not base64", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			envs[0]["file"] = "not base64!"
		}), "Invalid keystore file for environment production: not valid base64"),
		bad("file in URL-safe base64", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			envs[1]["file"] = "-_8="
		}), "Invalid keystore file for environment staging: not valid base64"),
		bad("file without padding", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			envs[0]["file"] = "a2V5c3RvcmU"
		}), "Invalid keystore file for environment production: not valid base64"),
		bad("empty file", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			envs[0]["file"] = ""
		}), "Invalid keystore file for environment production: empty"),
		bad("missing password", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			delete(envs[1], "password")
		}), "password is required for environment staging"),
		bad("missing keystore type", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			delete(envs[0], "keyStoreType")
		}), "keyStoreType is required for environment production"),
		bad("unknown keystore type", keystoreBody(func(_ map[string]any, envs []map[string]any) {
			envs[0]["keyStoreType"] = "PEM"
		}), `Invalid keyStoreType for environment production: "PEM" (expected JKS or PKCS12)`),
		{
			name: "existing name", method: "POST", path: keystores,
			body:   keystoreBody(func(ks map[string]any, _ []map[string]any) { ks["name"] = "trust-2026" }),
			status: 400, code: "bad_request",
			desc: "Keystore (name: trust-2026) is already exist! Try update operation if want to change its value.",
			check: func(t *testing.T, sim *simulator.Server) {
				// The seeded keystore keeps its generated content.
				if got, _ := sim.Keystore("MyProject", "trust-2026"); len(got.Environments) != 2 || got.Environments[0].Alias != "trust-2026" {
					t.Errorf("existing keystore was overwritten: %+v", got)
				}
			},
		},
	})
}

func TestUpdateKeystore(t *testing.T) {
	t.Parallel()
	// keystoreIs checks a keystore; want without environments stands for the
	// content generated for seeded client-2026, which no update replaced.
	keystoreIs := func(name string, want simulator.KeystoreState) func(*testing.T, *simulator.Server) {
		return func(t *testing.T, sim *simulator.Server) {
			t.Helper()
			got, ok := sim.Keystore("MyProject", name)
			if ok && want.Environments == nil {
				for _, e := range got.Environments {
					if e.Alias != "client-2026" || e.Password != "changeit" || e.KeyStoreType != "PKCS12" || len(e.File) == 0 {
						t.Errorf("Keystore(%s) environment %+v, want the seed's generated content", name, e)
					}
				}
				if len(got.Environments) != 2 {
					t.Errorf("Keystore(%s) has %d environments, want the seed's 2", name, len(got.Environments))
				}
				got.Environments = nil
			}
			if !ok || !reflect.DeepEqual(got, want) {
				t.Errorf("Keystore(%s) = %+v, %v; want %+v", name, got, ok, want)
			}
		}
	}
	seeded := keystoreIs("client-2026", simulator.KeystoreState{Name: "client-2026"})
	bad := func(name, query, body, desc string) apiCase {
		return apiCase{
			name: name, method: "PUT", path: keystores + "client-2026/" + query, body: body,
			status: 400, code: "bad_request", desc: desc, check: seeded,
		}
	}
	ok := func(name, query, body string, check func(*testing.T, *simulator.Server)) apiCase {
		return apiCase{
			name: name, method: "PUT", path: keystores + "client-2026/" + query, body: body,
			status: 200, want: deployedMyProject, check: check,
		}
	}
	runCases(t, []apiCase{
		ok("description", "", `{"description":"renewed"}`,
			keystoreIs("client-2026", simulator.KeystoreState{Name: "client-2026", Description: "renewed"})),
		ok("environments", "", `{"keyStoreEnvironmentList":[{"environmentName":"staging","file":"`+base64Of(updateFile)+`","password":"pw","keyStoreType":"JKS"}]}`,
			keystoreIs("client-2026", simulator.KeystoreState{Name: "client-2026", Environments: []simulator.KeystoreEnvironment{
				{EnvironmentName: "staging", File: updateFile, Password: "pw", KeyStoreType: "JKS"},
			}})),
		ok("rename", "", `{"name":"client-2026b"}`, func(t *testing.T, sim *simulator.Server) {
			keystoreExists("MyProject", "client-2026", false)(t, sim)
			keystoreIs("client-2026b", simulator.KeystoreState{Name: "client-2026b"})(t, sim)
		}),
		ok("rename to its own name", "", `{"name":"client-2026"}`, seeded),
		ok("nothing", "", `{}`, seeded),
		ok("jwkUpdateAction NULLIFY", "?jwkUpdateAction=NULLIFY", `{}`, seeded),
		ok("jwkUpdateAction UPDATE", "?jwkUpdateAction=UPDATE", `{}`, seeded),
		ok("updateScope with UPDATE", "?jwkUpdateAction=UPDATE&updateScope=ALL_PROJECTS", `{}`, seeded),
		bad("rename to an existing name", "", `{"name":"trust-2026","description":"x"}`,
			"Keystore (name: trust-2026) is already exist! Try update operation if want to change its value."),
		bad("empty name", "", `{"name":""}`, "name must not be empty"),
		bad("empty environment list", "", `{"keyStoreEnvironmentList":[]}`, "keyStoreEnvironmentList must not be empty"),
		bad("invalid environment", "", `{"description":"x","keyStoreEnvironmentList":[{"environmentName":"qa","file":"eA==","password":"p","keyStoreType":"JKS"}]}`,
			"Environment (name: qa) was not found!"),
		bad("invalid file", "", `{"keyStoreEnvironmentList":[{"environmentName":"staging","file":"%%%","password":"p","keyStoreType":"JKS"}]}`,
			"Invalid keystore file for environment staging: not valid base64"),
		ok("unknown members are ignored", "", `{"alias":"x","Description":"y"}`, seeded),
		bad("empty body", "", "", "Request body is empty; a JSON object is required"),
		bad("bad jwkUpdateAction", "?jwkUpdateAction=update", `{}`,
			`Invalid jwkUpdateAction: "update" (expected NULLIFY or UPDATE)`),
		bad("empty jwkUpdateAction", "?jwkUpdateAction=", `{}`,
			`Invalid jwkUpdateAction: "" (expected NULLIFY or UPDATE)`),
		bad("updateScope without jwkUpdateAction", "?updateScope=SAME_PROJECT", `{}`,
			"updateScope is only allowed with jwkUpdateAction=UPDATE"),
		bad("updateScope with NULLIFY", "?jwkUpdateAction=NULLIFY&updateScope=SAME_PROJECT", `{}`,
			"updateScope is only allowed with jwkUpdateAction=UPDATE"),
		bad("bad updateScope", "?jwkUpdateAction=UPDATE&updateScope=EVERYWHERE", `{}`,
			`Invalid updateScope: "EVERYWHERE" (expected SAME_PROJECT or ALL_PROJECTS)`),
		bad("query is checked before the body", "?jwkUpdateAction=X", `{"bad":1}`,
			`Invalid jwkUpdateAction: "X" (expected NULLIFY or UPDATE)`),
		{
			name: "unknown keystore", method: "PUT", path: keystores + "nope/?jwkUpdateAction=X", body: `{"bad":1}`,
			status: 400, code: "bad_request", desc: "Keystore (name: nope) is not found!",
		},
		{
			name: "admin keystore is not updatable from another project", method: "PUT", path: keystores + "shared-trust-root/", body: `{}`,
			status: 400, code: "bad_request", desc: "Keystore (name: shared-trust-root) is not found!",
		},
	})
}

func TestDeleteKeystore(t *testing.T) {
	t.Parallel()
	deleted := keystoreExists("MyProject", "legacy-2019", false)
	kept := keystoreExists("MyProject", "legacy-2019", true)
	runCases(t, []apiCase{
		{
			name: "delete", method: "DELETE", path: keystores + "legacy-2019/",
			status: 200, want: undeployedMyProject, check: deleted,
		},
		{
			name: "jwkDeleteAction NULLIFY", method: "DELETE", path: keystores + "legacy-2019/?jwkDeleteAction=NULLIFY",
			status: 200, want: undeployedMyProject, check: deleted,
		},
		{
			name: "jwkDeleteAction DELETE", method: "DELETE", path: keystores + "legacy-2019/?jwkDeleteAction=DELETE",
			status: 200, want: undeployedMyProject, check: deleted,
		},
		{
			name: "bad jwkDeleteAction", method: "DELETE", path: keystores + "legacy-2019/?jwkDeleteAction=KEEP",
			status: 400, code: "bad_request", desc: `Invalid jwkDeleteAction: "KEEP" (expected NULLIFY or DELETE)`, check: kept,
		},
		{
			name: "unknown keystore", method: "DELETE", path: keystores + "nope/",
			status: 400, code: "bad_request", desc: "Keystore (name: nope) is not found!", check: kept,
		},
		{
			name: "unknown project", method: "DELETE", path: "/apiops/projects/NoSuch/keystores/legacy-2019/",
			status: 404, code: "not_found", desc: "Project(NoSuch) was not found or user does not have privilege to access it!",
			check: kept,
		},
	})
}

func TestKeystoreLifecycle(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	wantBody(t, call(t, ts, "POST", keystores, keystoreBody(nil)), 200, deployedMyProject)
	wantBody(t, call(t, ts, "PUT", keystores+"client-2027/", `{"description":"kept envs"}`), 200, deployedMyProject)
	got, ok := sim.Keystore("MyProject", "client-2027")
	if !ok || got.Description != "kept envs" || len(got.Environments) != 2 || got.Environments[1].Password != "secret2" {
		t.Fatalf("after partial update: %+v, %v", got, ok)
	}
	wantBody(t, call(t, ts, "PUT", keystores+"client-2027/", `{"name":"client-2027-r"}`), 200, deployedMyProject)
	if renamed, ok := sim.Keystore("MyProject", "client-2027-r"); !ok || !reflect.DeepEqual(renamed.Environments, got.Environments) {
		t.Fatalf("after rename: %+v, %v", renamed, ok)
	}
	wantError(t, call(t, ts, "POST", keystores, keystoreBody(func(ks map[string]any, _ []map[string]any) {
		ks["name"] = "client-2027-r"
	})), 400, "bad_request", "Keystore (name: client-2027-r) is already exist! Try update operation if want to change its value.")
	wantBody(t, call(t, ts, "DELETE", keystores+"client-2027-r/", ""), 200, undeployedMyProject)
	wantError(t, call(t, ts, "DELETE", keystores+"client-2027-r/", ""), 400, "bad_request", "Keystore (name: client-2027-r) is not found!")
}

func TestPatchMTLS(t *testing.T) {
	t.Parallel()
	const mtls = "/settings/mtls/"
	payments := simulator.MTLSSettings{
		Enabled: true, KeyStoreID: "client-2025", TrustStoreID: "trust-2025",
		SupportedProtocolList: []string{"TLS_1_2", "TLS_1_3"}, HostnameVerifierType: "STRICT",
	}
	proxyIs := func(name string, edit func(*simulator.MTLSSettings)) func(*testing.T, *simulator.Server) {
		return func(t *testing.T, sim *simulator.Server) {
			t.Helper()
			var want simulator.MTLSSettings
			if name == "PaymentsAPI" {
				want = payments
				want.SupportedProtocolList = []string{"TLS_1_2", "TLS_1_3"}
			}
			if edit != nil {
				edit(&want)
			}
			if got, ok := sim.Proxy("MyProject", name); !ok || !reflect.DeepEqual(got, want) {
				t.Errorf("Proxy(%s) = %+v, %v\nwant %+v", name, got, ok, want)
			}
		}
	}
	patch := func(name, proxy, body string, check func(*testing.T, *simulator.Server)) apiCase {
		return apiCase{
			name: name, method: "PATCH", path: myProject + "apiProxies/" + proxy + mtls, body: body,
			status: 200, want: mtlsOK, check: check,
		}
	}
	bad := func(name, proxy, body, desc string) apiCase {
		return apiCase{
			name: name, method: "PATCH", path: myProject + "apiProxies/" + proxy + mtls, body: body,
			status: 400, code: "bad_request", desc: desc, check: proxyIs(proxy, nil),
		}
	}
	runCases(t, []apiCase{
		patch("enable", "MyAPI",
			`{"enabled":true,"keyStoreId":"client-2026","trustStoreId":"trust-2026","supportedProtocolList":["TLS_1_3"],"hostnameVerifierType":"DEFAULT"}`,
			proxyIs("MyAPI", func(m *simulator.MTLSSettings) {
				*m = simulator.MTLSSettings{Enabled: true, KeyStoreID: "client-2026", TrustStoreID: "trust-2026",
					SupportedProtocolList: []string{"TLS_1_3"}, HostnameVerifierType: "DEFAULT"}
			})),
		patch("rotate keystore only", "PaymentsAPI", `{"keyStoreId":"client-2026"}`,
			proxyIs("PaymentsAPI", func(m *simulator.MTLSSettings) { m.KeyStoreID = "client-2026" })),
		patch("hostname verifier only", "PaymentsAPI", `{"hostnameVerifierType":"BROWSER_COMPAT"}`,
			proxyIs("PaymentsAPI", func(m *simulator.MTLSSettings) { m.HostnameVerifierType = "BROWSER_COMPAT" })),
		patch("disable keeps the rest", "PaymentsAPI", `{"enabled":false}`,
			proxyIs("PaymentsAPI", func(m *simulator.MTLSSettings) { m.Enabled = false })),
		patch("all protocols", "PaymentsAPI", `{"supportedProtocolList":[]}`,
			proxyIs("PaymentsAPI", func(m *simulator.MTLSSettings) { m.SupportedProtocolList = []string{} })),
		patch("nothing", "MyAPI", `{}`, proxyIs("MyAPI", nil)),
		bad("enable without keystore", "MyAPI", `{"enabled":true,"trustStoreId":"trust-2026"}`,
			"KeyStore ID is required when mTLS is enabled"),
		bad("enable with empty keystore", "MyAPI", `{"enabled":true,"keyStoreId":""}`,
			"KeyStore ID is required when mTLS is enabled"),
		bad("clear keystore while enabled", "PaymentsAPI", `{"keyStoreId":""}`,
			"KeyStore ID is required when mTLS is enabled"),
		bad("unknown protocol", "PaymentsAPI", `{"supportedProtocolList":["TLS_1_3","TLS_1_4"]}`,
			`Invalid supportedProtocolList[1]: "TLS_1_4" (expected one of TLS_1_3, TLS_1_2, TLS_1_1, TLS_1_0, SSL_3_0)`),
		bad("unknown hostname verifier", "PaymentsAPI", `{"hostnameVerifierType":"strict"}`,
			`Invalid hostnameVerifierType: "strict" (expected one of NOOP, DEFAULT, STRICT, BROWSER_COMPAT)`),
		patch("unknown members are ignored", "MyAPI", `{"enabled":true,"keyStoreId":"k","poolSize":1}`,
			proxyIs("MyAPI", func(m *simulator.MTLSSettings) { m.Enabled, m.KeyStoreID = true, "k" })),
		// keyStoreID is not keyStoreId, so no keystore is given.
		bad("field name in other case", "MyAPI", `{"enabled":true,"keyStoreID":"k"}`,
			"KeyStore ID is required when mTLS is enabled"),
		bad("wrong type", "MyAPI", `{"enabled":"yes"}`, "Invalid request body: enabled must not be a JSON string"),
		bad("invalid JSON", "MyAPI", `{"enabled":tru}`, "Invalid request body: invalid character '}' in literal true (expecting 'e')"),
		{
			name: "unknown proxy", method: "PATCH", path: myProject + "apiProxies/NoAPI" + mtls, body: `{"bad":1}`,
			status: 404, code: "not_found", desc: "ApiProxy (name: NoAPI) was not found!",
		},
		{
			name: "proxy of another project", method: "PATCH", path: myProject + "apiProxies/OrdersAPI" + mtls, body: `{}`,
			status: 404, code: "not_found", desc: "ApiProxy (name: OrdersAPI) was not found!",
		},
		{
			name: "unknown project", method: "PATCH", path: "/apiops/projects/NoSuch/apiProxies/MyAPI" + mtls, body: `{}`,
			status: 404, code: "not_found", desc: "Project(NoSuch) was not found or user does not have privilege to access it!",
		},
	})
}

func TestEscapedNames(t *testing.T) {
	t.Parallel()
	sim, ts := serve(t, simulator.Seed{
		Token: token,
		Projects: map[string]simulator.ProjectSeed{
			"名前": {
				Environments: []string{"production"},
				Credentials:  map[string]simulator.CredentialState{"a/b": {}, "a": {}},
				Keystores:    []string{"trust store 2026", "100%"},
			},
		},
	})
	const project = "/apiops/projects/%E5%90%8D%E5%89%8D/"
	deployed := `{"success":true,"deploymentResult":{"success":true,"message":"Deployment completed successfully",` +
		`"environmentResults":[{"environmentName":"production","success":true,"message":"Deployed successfully"}]}}`

	path := project + "credentials/a%2Fb/truststore/trust%20store%202026/"
	wantBody(t, call(t, ts, "PUT", path, ""), 200, deployed)
	credentialIs("名前", "a/b", simulator.CredentialState{Truststore: "trust store 2026"})(t, sim)
	credentialIs("名前", "a", simulator.CredentialState{})(t, sim)

	wantBody(t, call(t, ts, "PUT", project+"credentials/a/keystore/100%25/", ""), 200, deployed)
	credentialIs("名前", "a", simulator.CredentialState{Keystore: "100%"})(t, sim)

	wantError(t, call(t, ts, "PUT", project+"credentials/a/b/truststore/trust%20store%202026/", ""),
		404, "not_found", "No endpoint for PUT /apiops/projects/%E5%90%8D%E5%89%8D/credentials/a/b/truststore/trust%20store%202026/")

	reqs := sim.Requests()
	if len(reqs) != 3 || reqs[0].Path != path {
		t.Fatalf("recorded %+v, want first path %s", reqs, path)
	}
}
