package worker_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/apiops-worker/apiops-worker/keystores"
	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

// TestKeystoresThatDoNotOpenAreRejected: a keystore file APIOps would refuse (wrong
// password, the other type, not a keystore, no key where one is needed, an expired
// certificate) makes its command, or its whole plan, rejected before any request, with
// the field to fix and the environment named; nothing of the file or password shows.
func TestKeystoresThatDoNotOpenAreRejected(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	const password = "ks-check-password-5b0e"
	good := keystorestest.Base64(keystorestest.Spec{Password: password, TrustStore: true})
	client := keystorestest.Base64(keystorestest.Spec{Password: password})
	clientJKS := keystorestest.Base64(keystorestest.Spec{Kind: keystores.KindJKS, Password: password})
	expired := keystorestest.Base64(keystorestest.Spec{Password: password,
		NotBefore: time.Now().Add(-400 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	notYet := keystorestest.Base64(keystorestest.Spec{Password: password,
		NotBefore: time.Now().Add(24 * time.Hour), NotAfter: time.Now().Add(400 * 24 * time.Hour)})
	env := func(name, file, kind, password string) map[string]any {
		return map[string]any{"environmentName": name, "file": file, "password": password, "keyStoreType": kind}
	}
	create := func(id string, second map[string]any) []byte {
		line, _ := json.Marshal(map[string]any{"id": id, "type": "keystore.create", "project": "MyProject",
			"params": map[string]any{"name": "checked-" + id, "keyStoreEnvironmentList": []any{env("production", good, "PKCS12", password), second}}})
		return line
	}
	plan, _ := json.Marshal(map[string]any{"id": "ks-plan", "type": "plan", "project": "MyProject", "steps": []any{
		map[string]any{"type": "keystore.create", "params": map[string]any{"name": "client-2031",
			"keyStoreEnvironmentList": []any{env("production", good, "PKCS12", password)}}},
		map[string]any{"type": "credential.keystore.set", "params": map[string]any{"username": "partner-a", "keystoreName": "client-2031"}},
	}})
	cases := []struct {
		line      []byte
		wantField string
		wantText  string
	}{
		{create("ks-password", env("staging", client, "PKCS12", "not-the-password-3c9a")), "params.keyStoreEnvironmentList[1].password", "wrong keystore password"},
		{create("ks-type", env("staging", clientJKS, "PKCS12", password)), "params.keyStoreEnvironmentList[1].keyStoreType", "is a JKS keystore, declared PKCS12"},
		{create("ks-random", env("staging", "c29tZSByYW5kb20gYnl0ZXMsIG5vdCBhIGtleXN0b3Jl", "JKS", password)), "params.keyStoreEnvironmentList[1].file", "not a keystore"},
		{create("ks-expired", env("staging", expired, "PKCS12", password)), "params.keyStoreEnvironmentList[1].file", "certificate has expired"},
		{create("ks-not-yet", env("staging", notYet, "PKCS12", password)), "params.keyStoreEnvironmentList[1].file", "certificate is not yet valid"},
		{plan, "steps[0].params.keyStoreEnvironmentList[0].file", "no private key"},
	}
	for _, tc := range cases {
		e.publishLine(tc.line)
	}
	results := e.awaitResults(len(cases), 30*time.Second)
	for _, tc := range cases {
		cmd, _ := messages.DecodeLine(tc.line)
		res := results[cmd.ID]
		switch {
		case res == nil:
			t.Errorf("%s: no result", cmd.ID)
		case res.Status != messages.StatusRejected || res.Error == nil || res.Error.Code != messages.CodeInvalidCommand:
			t.Errorf("%s: %s, want rejected with invalid_command", cmd.ID, res.raw)
		case res.Error.Field != tc.wantField || !strings.Contains(res.Error.Message, tc.wantText):
			t.Errorf("%s: error %+v, want field %s and %q", cmd.ID, res.Error, tc.wantField, tc.wantText)
		case cmd.Type != messages.PlanType && !strings.Contains(res.Error.Message, `"staging"`):
			t.Errorf("%s: the message does not name the environment: %q", cmd.ID, res.Error.Message)
		}
		for _, secret := range []string{password, "not-the-password-3c9a", good[:40], client[:40], clientJKS[:40], expired[:40], notYet[:40]} {
			if res != nil && strings.Contains(string(res.raw), secret) || strings.Contains(e.logs.String(), secret) {
				t.Errorf("%s: a secret reached the result or the logs: %.12s…", cmd.ID, secret)
			}
		}
	}
	for _, r := range e.sim.Requests() {
		if strings.Contains(r.Path, "/keystores") || strings.Contains(r.Path, "/credentials") {
			t.Errorf("APIOps got %s %s for a rejected command", r.Method, r.Path)
		}
	}
}

// TestKeystoreAboutToExpireRunsWithAWarning: a certificate expiring within 30 days is
// no reason to refuse, but the worker's log says so, naming field and environment.
func TestKeystoreAboutToExpireRunsWithAWarning(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	const password = "ks-expiring-password-8d21"
	file := keystorestest.Base64(keystorestest.Spec{Password: password, TrustStore: true,
		NotBefore: time.Now().Add(-300 * 24 * time.Hour), NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	line, _ := json.Marshal(map[string]any{"id": "ks-expiring", "type": "keystore.create", "project": "MyProject",
		"params": map[string]any{"name": "expiring-2026", "keyStoreEnvironmentList": []any{
			map[string]any{"environmentName": "production", "file": file, "password": password, "keyStoreType": "PKCS12"}}}})
	e.publishLine(line)
	res := e.awaitResults(1, 30*time.Second)["ks-expiring"]
	if res == nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("result %+v, want succeeded", res)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `params.keyStoreEnvironmentList[0].file (environment \"production\"): certificate 1`) || !strings.Contains(logs, "expires in") {
		t.Errorf("no expiry warning in the logs:\n%s", logs)
	}
	if strings.Contains(logs, password) || strings.Contains(logs, file[:40]) {
		t.Error("a secret reached the logs")
	}
}

// TestSealedKeystoresAreCheckedOnceOpened: apiopsctl cannot open a sealed file or
// password, so the worker checks them after opening them: a sealed wrong password, a
// sealed file of the other type and sealed random bytes are rejected naming the field
// and environment, before any request; the same keystore sealed with its password
// runs.
func TestSealedKeystoresAreCheckedOnceOpened(t *testing.T) {
	e := newEnv(t)
	keys, err := seal.LoadDir("../testdata/sealed/keys")
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Opener = keys
	e.start(nil)
	const password = "ks-sealed-password-2f7c"
	sealed := func(field, value string) any {
		s, err := seal.Seal(keys.Current(), messages.SealedContent{Project: "MyProject", Field: field, Value: value})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	client := keystorestest.Base64(keystorestest.Spec{Password: password})
	clientJKS := keystorestest.Base64(keystorestest.Spec{Kind: keystores.KindJKS, Password: password})
	random := make([]byte, 48<<10)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	random[0] = 0 // neither format starts so
	randomFile := base64.StdEncoding.EncodeToString(random)
	create := func(id, file, kind, password string) []byte {
		line, _ := json.Marshal(map[string]any{"id": id, "type": "keystore.create", "project": "MyProject",
			"params": map[string]any{"name": "sealed-" + id, "keyStoreEnvironmentList": []any{map[string]any{
				"environmentName": "staging", "file": sealed("file", file), "password": sealed("password", password), "keyStoreType": kind}}}})
		return line
	}
	cases := []struct {
		line      []byte
		wantField string // "" for succeeded
		wantText  string
	}{
		{create("sealed-password", client, "PKCS12", "not-the-password-71ab"), "params.keyStoreEnvironmentList[0].password", "wrong keystore password"},
		{create("sealed-type", clientJKS, "PKCS12", password), "params.keyStoreEnvironmentList[0].keyStoreType", "is a JKS keystore, declared PKCS12"},
		{create("sealed-random", randomFile, "JKS", password), "params.keyStoreEnvironmentList[0].file", "not a keystore"},
		{create("sealed-good", client, "PKCS12", password), "", ""},
	}
	for _, tc := range cases {
		e.publishLine(tc.line)
	}
	results := e.awaitResults(len(cases), 30*time.Second)
	for _, tc := range cases {
		cmd, _ := messages.DecodeLine(tc.line)
		res := results[cmd.ID]
		switch {
		case res == nil:
			t.Errorf("%s: no result", cmd.ID)
		case tc.wantField == "" && res.Status != messages.StatusSucceeded:
			t.Errorf("%s: %s, want succeeded", cmd.ID, res.raw)
		case tc.wantField == "":
		case res.Status != messages.StatusRejected || res.Error == nil || res.Error.Code != messages.CodeInvalidCommand:
			t.Errorf("%s: %s, want rejected with invalid_command", cmd.ID, res.raw)
		case res.Error.Field != tc.wantField || !strings.Contains(res.Error.Message, tc.wantText) || !strings.Contains(res.Error.Message, `"staging"`):
			t.Errorf("%s: error %+v, want field %s, %q and the environment", cmd.ID, res.Error, tc.wantField, tc.wantText)
		}
		for _, secret := range []string{password, "not-the-password-71ab", client[:40], clientJKS[:40], randomFile[:40]} {
			if res != nil && strings.Contains(string(res.raw), secret) || strings.Contains(e.logs.String(), secret) {
				t.Errorf("%s: a secret reached the result or the logs: %.12s…", cmd.ID, secret)
			}
		}
	}
	created := 0
	for _, r := range e.sim.Requests() {
		if strings.Contains(r.Path, "/keystores") {
			created++
		}
	}
	if created != 1 {
		t.Errorf("APIOps got %d keystore requests, want 1 (sealed-good's)", created)
	}
}

// trustedCertificate is a certificate to build truststores from.
func trustedCertificate(t *testing.T) *x509.Certificate {
	t.Helper()
	certs, err := pkcs12.DecodeTrustStore(keystorestest.File(keystorestest.Spec{TrustStore: true}), keystorestest.Password)
	if err != nil || len(certs) != 1 {
		t.Fatalf("DecodeTrustStore: %d certificates, error %v", len(certs), err)
	}
	return certs[0]
}

// costlyTrustStore is a PKCS12 truststore with MAC and encrypted contents at 2^17
// iterations: within every limit, a quarter of what one command may ask for in all.
func costlyTrustStore(t *testing.T, cert *x509.Certificate, password string) string {
	t.Helper()
	pfx, err := pkcs12.Modern2023.WithIterations(1<<17).EncodeTrustStoreEntries([]pkcs12.TrustStoreEntry{{Cert: cert, FriendlyName: "ca"}}, password)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pfx)
}

// TestCostlyKeystoresAreBounded: a file whose PBMAC1 asks for 2^23 iterations (4 s
// to open) and a command whose files together ask for too many are rejected fast,
// naming the field; while TeamA's commands with costly files (within the limits) keep
// its keystore checks busy, one command at a time, a MyProject command with a keystore
// is checked and runs meanwhile; and TeamA's commands each finish once.
func TestCostlyKeystoresAreBounded(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	const password = "ks-costly-password-61d3"
	env := func(name, file string) map[string]any {
		return map[string]any{"environmentName": name, "file": file, "password": password, "keyStoreType": "PKCS12"}
	}
	create := func(project, id string, envs ...any) []byte {
		line, _ := json.Marshal(map[string]any{"id": id, "type": "keystore.create", "project": project,
			"params": map[string]any{"name": "ks-" + id, "keyStoreEnvironmentList": envs}})
		return line
	}
	cert := trustedCertificate(t)
	var costly []any
	for _, name := range []string{"production", "staging", "test", "env-3", "env-4"} {
		costly = append(costly, env(name, costlyTrustStore(t, cert, password)))
	}

	// The hostile ones: refused before any key is derived.
	pfx, err := pkcs12.Modern2026.WithIterations(0x010101).EncodeTrustStoreEntries([]pkcs12.TrustStoreEntry{{Cert: cert, FriendlyName: "ca"}}, password)
	if err != nil {
		t.Fatal(err)
	}
	pbmac1 := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0e}
	at := bytes.Index(pfx, pbmac1)
	if at < 0 {
		t.Fatal("no PBMAC1 in the file")
	}
	count := bytes.Index(pfx[at:], []byte{0x02, 0x03, 0x01, 0x01, 0x01})
	if count < 0 {
		t.Fatal("no PBMAC1 iteration count in the file")
	}
	copy(pfx[at+count+2:], []byte{0x7f, 0xff, 0xff}) // 8,388,607
	published := time.Now()
	e.publishLine(create("MyProject", "ks-pbmac1", env("staging", base64.StdEncoding.EncodeToString(pfx))))
	e.publishLine(create("MyProject", "ks-many", costly...))
	results := e.awaitResults(2, 30*time.Second)
	if took := time.Since(published); took > 2*time.Second {
		t.Errorf("the hostile commands took %v to be rejected", took)
	}
	for id, want := range map[string]string{"ks-pbmac1": "params.keyStoreEnvironmentList[0].file", "ks-many": "params.keyStoreEnvironmentList"} {
		res := results[id]
		if res == nil || res.Status != messages.StatusRejected || res.Error == nil || res.Error.Code != messages.CodeInvalidCommand ||
			res.Error.Field != want || !strings.Contains(res.Error.Message, "keystore not supported") {
			t.Errorf("%s: %+v, want rejected with invalid_command, field %s", id, res, want)
		}
	}

	// TeamA: commands of 3 costly files each (one per environment APIOps has),
	// checked one at a time. Once the first has finished, MyProject's command must
	// not wait for the others.
	const teamA = 12
	for i := range teamA {
		e.publishLine(create("TeamA", fmt.Sprintf("ks-slow-%d", i), costly[:3]...))
	}
	seen := map[string]bool{}
	doneA, victimAfter := 0, -1 // victimAfter: how many of TeamA's finished before MyProject's
	var victimPublished time.Time
	deadline := time.After(90 * time.Second)
	for doneA < teamA || victimAfter < 0 {
		select {
		case msg := <-e.results:
			r := decodeResult(t, msg)
			if seen[r.ID] {
				t.Errorf("a second result for %s", r.ID)
			}
			seen[r.ID] = true
			switch {
			case r.ID == "ks-victim":
				victimAfter = doneA
				if r.Status != messages.StatusSucceeded {
					t.Errorf("MyProject's command: %s", r.raw)
				}
				t.Logf("MyProject's command finished %v after it was published, with %d of TeamA's %d done", time.Since(victimPublished), doneA, teamA)
			case r.Project != "TeamA":
				t.Fatalf("unexpected result %s", r.raw)
			default:
				if r.Status != messages.StatusSucceeded {
					t.Errorf("%s: %s", r.ID, r.raw)
				}
				if doneA++; doneA == 1 {
					victimPublished = time.Now()
					e.publishLine(create("MyProject", "ks-victim", env("production", keystorestest.Base64(keystorestest.Spec{Password: password, TrustStore: true}))))
				}
			}
		case <-deadline:
			t.Fatalf("%d of TeamA's %d results, MyProject's: %v; logs:\n%s", doneA, teamA, victimAfter >= 0, e.logs.String())
		}
	}
	if victimAfter == teamA {
		t.Errorf("MyProject's command finished after all of TeamA's, %v after it was published", time.Since(victimPublished))
	}
}
