package messages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
)

func TestInvalidCorpus(t *testing.T) {
	cases := readJSONL[invalidCase](t, "../testdata/invalid-commands.jsonl")
	if len(cases) < 50 {
		t.Fatalf("only %d invalid cases", len(cases))
	}
	typesSeen := map[string]bool{}
	for _, tc := range cases {
		typesSeen[tc.Type] = true
		t.Run(tc.Name, func(t *testing.T) {
			cmd, err := messages.Decode(tc.Project, tc.Type, []byte(tc.Command))
			var e *messages.Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode = %v, want *messages.Error", err)
			}
			if e.Code != tc.Code || e.Field != tc.Field {
				t.Errorf("got code %q field %q (%v), want code %q field %q", e.Code, e.Field, e, tc.Code, tc.Field)
			}
			if e.Message == "" {
				t.Error("empty message")
			}
			if cmd == nil {
				t.Fatal("Decode returned a nil command with its error")
			}
		})
	}
	for _, ct := range messages.Types() {
		if !typesSeen[ct.Name] {
			t.Errorf("no invalid case for %s", ct.Name)
		}
	}
}

func TestExamplesAreValidAndRoundTrip(t *testing.T) {
	examples := exampleCommands(t)
	for _, ct := range messages.Types() {
		t.Run(ct.Name, func(t *testing.T) {
			data, ok := examples[ct.Name]
			if !ok {
				t.Fatalf("no testdata/commands/%s.json", ct.Name)
			}
			cmd, err := messages.DecodeLine(data)
			if err != nil {
				t.Fatal(err)
			}
			if cmd.Type != ct.Name {
				t.Fatalf("type %q", cmd.Type)
			}
			wire, err := cmd.Encode()
			if err != nil {
				t.Fatal(err)
			}
			again, err := messages.DecodeLine(wire)
			if err != nil {
				t.Fatalf("re-decoding the encoded command: %v\n%s", err, wire)
			}
			a, b := cmd.APIRequest(), again.APIRequest()
			if a.String() != b.String() || a.Query.Encode() != b.Query.Encode() || !bytes.Equal(a.Body, b.Body) {
				t.Errorf("round trip changed the request:\n%v %v %s\n%v %v %s", a, a.Query, a.Body, b, b.Query, b.Body)
			}
		})
	}
}

func TestValidEdgeCases(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct{ name, typ, body string }{
		{"id of 128 characters", "credential.keystore.remove", `{"id":"` + long(128) + `","params":{"username":"u"}}`},
		{"id with every allowed character", "credential.keystore.remove", `{"id":"Az09._:-","params":{"username":"u"}}`},
		{"correlationId of 128 characters", "credential.keystore.remove", `{"id":"a","correlationId":"` + long(128) + `","params":{"username":"u"}}`},
		{"notAfter in the past", "credential.keystore.remove", `{"id":"a","notAfter":"2001-01-01T00:00:00Z","params":{"username":"u"}}`},
		{"notAfter with offset", "credential.keystore.remove", `{"id":"a","notAfter":"2026-11-22T12:00:00+03:00","params":{"username":"u"}}`},
		{"null replyTo counts as absent", "credential.keystore.remove", `{"id":"a","replyTo":null,"params":{"username":"u"}}`},
		{"matching type and project", "credential.keystore.remove", `{"id":"a","type":"credential.keystore.remove","project":"MyProject","params":{"username":"u"}}`},
		{"escaped-looking name", "credential.truststore.set", `{"id":"a","params":{"username":"%2e%2e","keystoreName":"名前"}}`},
		{"name of 255 characters", "keystore.delete", `{"id":"a","params":{"keystoreName":"` + long(255) + `"}}`},
		{"name with dots and spaces", "keystore.delete", `{"id":"a","params":{"keystoreName":"my key.store v2"}}`},
		{"update with only jwkUpdateAction", "keystore.update", `{"id":"a","params":{"keystoreName":"k","jwkUpdateAction":"NULLIFY"}}`},
		{"update with UPDATE and scope", "keystore.update", `{"id":"a","params":{"keystoreName":"k","jwkUpdateAction":"UPDATE","updateScope":"ALL_PROJECTS"}}`},
		{"update with an empty description", "keystore.update", `{"id":"a","params":{"keystoreName":"k","description":""}}`},
		{"create with alias", "keystore.create", `{"id":"a","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"production","file":"AAEC","password":"p","alias":"x","keyStoreType":"PKCS12"}]}}`},
		{"mtls disabled without keyStoreId", "proxy.mtls.update", `{"id":"a","params":{"apiProxyName":"p","enabled":false}}`},
		{"mtls with an empty protocol list", "proxy.mtls.update", `{"id":"a","params":{"apiProxyName":"p","supportedProtocolList":[]}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := messages.Decode("MyProject", tc.typ, []byte(tc.body)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAPIRequest(t *testing.T) {
	const file = "AAECAw==" // 4 bytes
	cases := []struct {
		typ, params         string
		method, path, query string
		body                string // "" means no body
	}{
		{"credential.keystore.set", `{"username":"api-user","keystoreName":"k1"}`, "PUT", "apiops/projects/P/credentials/api-user/keystore/k1", "", ""},
		{"credential.keystore.remove", `{"username":"api-user"}`, "DELETE", "apiops/projects/P/credentials/api-user/keystore", "", ""},
		{"credential.truststore.set", `{"username":"a b?c#","keystoreName":"名前"}`, "PUT", "apiops/projects/P/credentials/a b?c#/truststore/名前", "", ""},
		{"credential.truststore.remove", `{"username":"u"}`, "DELETE", "apiops/projects/P/credentials/u/truststore", "", ""},
		{"credential.privatekey.set", `{"username":"u","keyName":"key"}`, "PUT", "apiops/projects/P/credentials/u/privateKey/key", "", ""},
		{"credential.privatekey.remove", `{"username":"u"}`, "DELETE", "apiops/projects/P/credentials/u/privateKey", "", ""},
		{"keystore.create", `{"keyStoreEnvironmentList":[{"keyStoreType":"JKS","password":"pw","file":"` + file + `","environmentName":"production"}],"name":"k"}`,
			"POST", "apiops/projects/P/keystores", "",
			`{"name":"k","keyStoreEnvironmentList":[{"environmentName":"production","file":"` + file + `","password":"pw","keyStoreType":"JKS"}]}`},
		{"keystore.update", `{"keystoreName":"k","jwkUpdateAction":"UPDATE","updateScope":"SAME_PROJECT"}`, "PUT", "apiops/projects/P/keystores/k", "jwkUpdateAction=UPDATE&updateScope=SAME_PROJECT", `{}`},
		{"keystore.update", `{"keystoreName":"k","name":"k2","description":""}`, "PUT", "apiops/projects/P/keystores/k", "", `{"name":"k2","description":""}`},
		{"keystore.delete", `{"keystoreName":"k","jwkDeleteAction":"DELETE"}`, "DELETE", "apiops/projects/P/keystores/k", "jwkDeleteAction=DELETE", ""},
		{"keystore.delete", `{"keystoreName":"k"}`, "DELETE", "apiops/projects/P/keystores/k", "", ""},
		{"proxy.mtls.update", `{"apiProxyName":"MyAPI","enabled":false}`, "PATCH", "apiops/projects/P/apiProxies/MyAPI/settings/mtls", "", `{"enabled":false}`},
		{"proxy.mtls.update", `{"apiProxyName":"MyAPI","enabled":true,"keyStoreId":"ks","supportedProtocolList":[],"hostnameVerifierType":"STRICT"}`, "PATCH", "apiops/projects/P/apiProxies/MyAPI/settings/mtls", "",
			`{"enabled":true,"keyStoreId":"ks","supportedProtocolList":[],"hostnameVerifierType":"STRICT"}`},
		{"proxy.mtls.update", `{"apiProxyName":"MyAPI","enabled":true,"keyStoreName":"client-2026","trustStoreName":"trust-2026","disableSslValidation":false,"deploy":true,"deployTargetEnvironmentNameList":["production"]}`,
			"PATCH", "apiops/projects/P/apiProxies/MyAPI/settings/mtls", "",
			`{"enabled":true,"keyStoreName":"client-2026","trustStoreName":"trust-2026","disableSslValidation":false,"deploy":true,"deployTargetEnvironmentNameList":["production"]}`},
		{"credential.publickey.set", `{"username":"u","keyName":"pub"}`, "PUT", "apiops/projects/P/credentials/u/publicKey/pub", "", ""},
		{"credential.publickey.remove", `{"username":"u"}`, "DELETE", "apiops/projects/P/credentials/u/publicKey", "", ""},
		{"credential.secretkey.set", `{"username":"u","secretKeyName":"hmac"}`, "PUT", "apiops/projects/P/credentials/u/secretKey/hmac", "", ""},
		{"credential.secretkey.remove", `{"username":"u"}`, "DELETE", "apiops/projects/P/credentials/u/secretKey", "", ""},
		{"credential.certificate.set", `{"username":"u","certificateName":"cert"}`, "PUT", "apiops/projects/P/credentials/u/certificate/cert", "", ""},
		{"credential.certificate.remove", `{"username":"u"}`, "DELETE", "apiops/projects/P/credentials/u/certificate", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			cmd, err := messages.Decode("P", tc.typ, []byte(`{"id":"x","params":`+tc.params+`}`))
			if err != nil {
				t.Fatal(err)
			}
			req := cmd.APIRequest()
			if req.Method != tc.method || strings.Join(req.Path, "/") != tc.path || req.Query.Encode() != tc.query {
				t.Errorf("got %s %q ?%s, want %s %q ?%s", req.Method, strings.Join(req.Path, "/"), req.Query.Encode(), tc.method, tc.path, tc.query)
			}
			if string(req.Body) != tc.body || (tc.body == "") != (req.Body == nil) {
				t.Errorf("body %q, want %q", req.Body, tc.body)
			}
		})
	}
}

// TestKeystoreIDLookups: a keystore named in the mTLS PATCH is looked up for its id; one
// given by id is not.
func TestKeystoreIDLookups(t *testing.T) {
	cases := []struct {
		params string
		want   []messages.KeystoreIDLookup
	}{
		{`{"apiProxyName":"a","keyStoreName":"client-2026"}`, []messages.KeystoreIDLookup{{Project: "P", Name: "client-2026", Field: "keyStoreId"}}},
		{`{"apiProxyName":"a","keyStoreId":"6650a1f0c2b4e81d9c3f0a11","trustStoreName":"trust-2026"}`, []messages.KeystoreIDLookup{{Project: "P", Name: "trust-2026", Field: "trustStoreId"}}},
		{`{"apiProxyName":"a","keyStoreId":"6650a1f0c2b4e81d9c3f0a11","trustStoreId":"6650a1f0c2b4e81d9c3f0a12"}`, nil},
	}
	for _, tc := range cases {
		cmd, err := messages.Decode("P", "proxy.mtls.update", []byte(`{"id":"x","params":`+tc.params+`}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := cmd.APIRequest().KeystoreIDs; !slices.Equal(got, tc.want) {
			t.Errorf("%s: KeystoreIDs %+v, want %+v", tc.params, got, tc.want)
		}
	}
}

func TestResourceKey(t *testing.T) {
	cases := []struct{ typ, params, want string }{
		{"credential.keystore.set", `{"username":"u1","keystoreName":"k"}`, "P/credential/u1"},
		{"credential.privatekey.remove", `{"username":"u1"}`, "P/credential/u1"},
		{"keystore.create", `{"name":"k","keyStoreEnvironmentList":[{"environmentName":"e","file":"AA==","password":"p","keyStoreType":"JKS"}]}`, "P/keystore/k"},
		{"keystore.update", `{"keystoreName":"k","name":"renamed"}`, "P/keystore/k"},
		{"keystore.delete", `{"keystoreName":"k"}`, "P/keystore/k"},
		{"proxy.mtls.update", `{"apiProxyName":"api","enabled":false}`, "P/apiProxy/api"},
	}
	for _, tc := range cases {
		cmd, err := messages.Decode("P", tc.typ, []byte(`{"id":"x","params":`+tc.params+`}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := cmd.ResourceKey(); got != tc.want {
			t.Errorf("%s: ResourceKey = %q, want %q", tc.typ, got, tc.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	cmd, err := messages.Decode("P", "proxy.mtls.update", []byte(`{"id":"x","params":{"apiProxyName":"a","hostnameVerifierType":"NOOP"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cmd.Warnings()) != 1 {
		t.Errorf("warnings = %q, want one for NOOP", cmd.Warnings())
	}
}

func TestDecodeLine(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`{"id":"a","project":"P","params":{"username":"u"}}`, "type"},
		{`{"id":"a","type":"credential.keystore.remove","params":{"username":"u"}}`, "project"},
		{`{"id":"a","type":"credential.keystore.remove","project":"My.Project","params":{"username":"u"}}`, "project"},
	} {
		_, err := messages.DecodeLine([]byte(tc.body))
		var e *messages.Error
		if !errors.As(err, &e) || e.Field != tc.field {
			t.Errorf("DecodeLine(%s) = %v, want an error on %s", tc.body, err, tc.field)
		}
	}
}

func TestRejectedCommandKeepsWhatIsValid(t *testing.T) {
	cmd, err := messages.Decode("P", "credential.keystore.set", []byte(`{"id":"ok-1","correlationId":"batch","replyTo":"_INBOX.P.x","params":{"username":""}}`))
	if err == nil {
		t.Fatal("want an error")
	}
	if cmd.ID != "ok-1" || cmd.CorrelationID != "batch" || cmd.ReplyTo != "_INBOX.P.x" {
		t.Errorf("salvaged %+v", cmd)
	}
	cmd, _ = messages.Decode("P", "credential.keystore.set", []byte(`{"id":"bad id","replyTo":"a..b","params":{}}`))
	if cmd.ID != "" || cmd.ReplyTo != "" {
		t.Errorf("kept invalid id or replyTo: %+v", cmd)
	}
}

func TestSubjects(t *testing.T) {
	s := messages.Subjects{}
	if got := s.Command("MyProject", "credential.truststore.set"); got != "apiops.cmd.MyProject.credential.truststore.set" {
		t.Errorf("Command = %q", got)
	}
	custom := messages.Subjects{Prefix: "acme.apiops"}
	if got := custom.Result("P", "keystore.create"); got != "acme.apiops.result.P.keystore.create" {
		t.Errorf("Result = %q", got)
	}
	if got := custom.DeadLetter("P", "keystore.create"); got != "acme.apiops.dlq.P.keystore.create" {
		t.Errorf("DeadLetter = %q", got)
	}
	project, typ, err := custom.ParseCommand("acme.apiops.cmd.TeamA.proxy.mtls.update")
	if err != nil || project != "TeamA" || typ != "proxy.mtls.update" {
		t.Errorf("ParseCommand = %q %q %v", project, typ, err)
	}
	for _, bad := range []string{"apiops.cmd.P", "apiops.cmd..x", "apiops.result.P.keystore.create", "other.cmd.P.keystore.create", "apiops.cmd.P."} {
		if _, _, err := s.ParseCommand(bad); err == nil {
			t.Errorf("ParseCommand(%q) succeeded", bad)
		}
	}
	if project, typ, err := s.ParseResult("apiops.result.P.keystore.create"); err != nil || project != "P" || typ != "keystore.create" {
		t.Errorf("ParseResult = %q %q %v", project, typ, err)
	}
}

func TestEncodeRevealsSecretsJSONRedacts(t *testing.T) {
	const password, file = "pw-7f3a9c", "c2VjcmV0LWtleXN0b3Jl"
	cmd := &messages.Command{
		ID: "c1", Project: "P",
		Params: &messages.KeystoreCreate{Name: "k", KeyStoreEnvironmentList: []messages.KeyStoreEnvironment{{
			EnvironmentName: "production", File: messages.NewSecret(file), Password: messages.NewSecret(password), KeyStoreType: "JKS",
		}}},
	}
	if err := cmd.Validate(); err != nil {
		t.Fatal(err)
	}
	wire, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(wire, []byte(password)) || !bytes.Contains(wire, []byte(file)) {
		t.Errorf("Encode must carry the secrets: %s", wire)
	}
	logged, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(logged, []byte(password)) || bytes.Contains(logged, []byte(file)) || !bytes.Contains(logged, []byte(messages.Redacted)) {
		t.Errorf("json.Marshal must redact: %s", logged)
	}
	if s := fmt.Sprint(cmd.APIRequest()); strings.Contains(s, password) {
		t.Errorf("APIRequest printed its body: %s", s)
	}
}

func TestTypeOf(t *testing.T) {
	for _, ct := range messages.Types() {
		got, ok := messages.TypeOf(ct.NewParams())
		if !ok || got.Name != ct.Name {
			t.Errorf("TypeOf(NewParams of %s) = %v %v", ct.Name, got.Name, ok)
		}
	}
	if _, ok := messages.TypeOf("nope"); ok {
		t.Error("TypeOf(string) found a type")
	}
}

// TestReplyToOnlyInTheProjectsInbox: a reply goes only under _INBOX.<project>., never to
// a system subject, the worker's own subjects, or another project's inbox.
func TestReplyToOnlyInTheProjectsInbox(t *testing.T) {
	for _, replyTo := range []string{"$KV.APIOPS_IDEMPOTENCY.result.x", "$JS.API.STREAM.DELETE.APIOPS_RESULTS",
		"apiops.cmd.Other.keystore.delete", "apiops.result.P.x", "_INBOX.abc", "_INBOX.Other.abc", "_INBOX.P", "_INBOX.PX.abc", "_INBOX.P."} {
		_, err := messages.Decode("P", "keystore.delete", []byte(`{"id":"a","replyTo":"`+replyTo+`","params":{"keystoreName":"k"}}`))
		var e *messages.Error
		if !errors.As(err, &e) || e.Field != "replyTo" {
			t.Errorf("replyTo %s: %v", replyTo, err)
		}
	}
	for _, replyTo := range []string{"_INBOX.P.abc", "_INBOX.P.abc.7"} {
		if _, err := messages.Decode("P", "keystore.delete", []byte(`{"id":"a","replyTo":"`+replyTo+`","params":{"keystoreName":"k"}}`)); err != nil {
			t.Errorf("replyTo %s: %v", replyTo, err)
		}
	}
}
