package ctl

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/internal/testkit/fakeworker"
	"github.com/apiops-worker/apiops-worker/keystores"
	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
	"github.com/apiops-worker/apiops-worker/messages"
)

// keystoreCheckLines are commands whose keystores do not open, or open with a
// warning, and the field each invalid one's rejection names ("" for a valid one).
func keystoreCheckLines(t *testing.T) (lines []string, fields []string, secrets []string) {
	t.Helper()
	const wrongPassword = "n0t-the-pw-61de"
	trust := keystorestest.Base64(keystorestest.Spec{Password: password, TrustStore: true})
	client := keystorestest.Base64(keystorestest.Spec{Password: password})
	jks := keystorestest.Base64(keystorestest.Spec{Kind: keystores.KindJKS, Password: password})
	expiring := keystorestest.Base64(keystorestest.Spec{Password: password, TrustStore: true,
		NotBefore: time.Now().Add(-300 * 24 * time.Hour), NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	expired := keystorestest.Base64(keystorestest.Spec{Password: password,
		NotBefore: time.Now().Add(-400 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	notYet := keystorestest.Base64(keystorestest.Spec{Password: password,
		NotBefore: time.Now().Add(24 * time.Hour), NotAfter: time.Now().Add(400 * 24 * time.Hour)})
	random := make([]byte, 700<<10)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	random[0] = 0 // neither format starts so
	randomFile := base64.StdEncoding.EncodeToString(random)
	env := func(name, file, kind, password string) map[string]any {
		return map[string]any{"environmentName": name, "file": file, "password": password, "keyStoreType": kind}
	}
	line := func(v map[string]any) string {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	create := func(id string, second map[string]any) string {
		return line(map[string]any{"id": id, "type": "keystore.create", "project": "MyProject",
			"params": map[string]any{"name": "k-" + id, "keyStoreEnvironmentList": []any{env("production", trust, "PKCS12", password), second}}})
	}
	plan := line(map[string]any{"id": "ks-plan", "type": "plan", "project": "MyProject", "steps": []any{
		map[string]any{"type": "keystore.create", "params": map[string]any{"name": "client-2031", "keyStoreEnvironmentList": []any{env("production", trust, "PKCS12", password)}}},
		map[string]any{"type": "proxy.mtls.update", "params": map[string]any{"apiProxyName": "MyAPI", "enabled": true, "keyStoreName": "client-2031"}},
	}})
	lines = []string{
		create("ks-password", env("staging", client, "PKCS12", wrongPassword)),
		create("ks-type", env("staging", client, "JKS", password)),
		create("ks-random", env("staging", randomFile, "PKCS12", password)),
		plan,
		create("ks-expired", env("staging", expired, "PKCS12", password)),
		create("ks-not-yet", env("staging", notYet, "PKCS12", password)),
		create("ks-good", env("staging", jks, "JKS", password)),
		create("ks-expiring", env("staging", expiring, "PKCS12", password)),
	}
	fields = []string{
		"params.keyStoreEnvironmentList[1].password",
		"params.keyStoreEnvironmentList[1].keyStoreType",
		"params.keyStoreEnvironmentList[1].file",
		"steps[0].params.keyStoreEnvironmentList[0].file",
		"params.keyStoreEnvironmentList[1].file",
		"params.keyStoreEnvironmentList[1].file",
		"", "",
	}
	secrets = []string{password, wrongPassword}
	for _, file := range []string{trust, client, jks, expiring, expired, notYet, randomFile} {
		secrets = append(secrets, file[:40], file[len(file)-40:])
	}
	return lines, fields, secrets
}

func TestValidateOpensKeystores(t *testing.T) {
	lines, fields, secrets := keystoreCheckLines(t)
	var out output
	code := Validate([]string{"-"}, IO{Stdin: strings.NewReader(strings.Join(lines, "\n")), Stdout: &out.stdout, Stderr: &out.stderr,
		Getenv: func(string) string { return "" }})
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, out.stderr.String())
	}
	var rejected []messages.Result
	for _, l := range strings.Split(strings.TrimSpace(out.stdout.String()), "\n") {
		var r messages.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("stdout line %q: %v", l, err)
		}
		rejected = append(rejected, r)
	}
	if len(rejected) != 6 {
		t.Fatalf("%d rejections, want 6:\n%s", len(rejected), out.stdout.String())
	}
	for i, r := range rejected {
		if r.Status != messages.StatusRejected || r.Error == nil || r.Error.Code != messages.CodeInvalidCommand || r.Error.Field != fields[i] {
			t.Errorf("rejection %d: %+v %+v, want invalid_command naming %s", i, r, r.Error, fields[i])
		}
	}
	stderr := out.stderr.String()
	for _, want := range []string{
		`line 1: invalid_command: params.keyStoreEnvironmentList[1].password (environment "staging") is refused: wrong keystore password`,
		`line 2: invalid_command: params.keyStoreEnvironmentList[1].keyStoreType (environment "staging") is refused: keystore type does not match the file: the file is a PKCS12 keystore, declared JKS`,
		`line 3: invalid_command: params.keyStoreEnvironmentList[1].file (environment "staging") is refused: not a keystore`,
		`line 4: invalid_command: steps[0].params.keyStoreEnvironmentList[0].file (environment "production") is refused: no private key`,
		`line 5: invalid_command: params.keyStoreEnvironmentList[1].file (environment "staging") is refused: certificate 1 (`,
		`): certificate has expired: valid from `,
		`line 6: invalid_command: params.keyStoreEnvironmentList[1].file (environment "staging") is refused: certificate 1 (`,
		`): certificate is not yet valid: valid from `,
		`line 8: warning: params.keyStoreEnvironmentList[1].file (environment "staging"): certificate 1 (`,
		"6 of 8 commands are invalid",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for _, secret := range secrets {
		if strings.Contains(out.stdout.String()+stderr, secret) {
			t.Errorf("the output shows a secret: %.12s…", secret)
		}
	}
}

func TestSubmitRefusesKeystoresThatDoNotOpen(t *testing.T) {
	e := newTestEnv(t)
	w := fakeworker.Start(t, e.nc, fakeworker.Options{})
	lines, fields, secrets := keystoreCheckLines(t)
	lines = lines[:len(lines)-1] // ks-expiring would be published too; one valid line is enough
	var out output
	code := Submit(testContext(t), []string{"--output", "json", "-"}, e.io(strings.Join(lines, "\n"), &out))
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, out.stderr.String())
	}
	results := strings.Split(strings.TrimSpace(out.stdout.String()), "\n")
	if len(results) != len(lines) {
		t.Fatalf("%d results, want %d:\n%s", len(results), len(lines), out.stdout.String())
	}
	for i, l := range results {
		var r messages.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		switch {
		case fields[i] == "" && r.Status != messages.StatusSucceeded:
			t.Errorf("result %d: %s, want succeeded", i, l)
		case fields[i] != "" && (r.Status != messages.StatusRejected || r.Error == nil || r.Error.Field != fields[i]):
			t.Errorf("result %d: %s, want rejected naming %s", i, l, fields[i])
		}
	}
	if received := w.Received(); len(received) != 1 || !strings.Contains(string(received[0].Data), `"ks-good"`) {
		t.Errorf("the worker received %d commands, want only ks-good", len(received))
	}
	if !strings.Contains(out.stderr.String(), `line 2: invalid_command: params.keyStoreEnvironmentList[1].keyStoreType (environment "staging")`) {
		t.Errorf("stderr does not name the line, field and environment:\n%s", out.stderr.String())
	}
	for _, secret := range secrets {
		if strings.Contains(out.stdout.String()+out.stderr.String(), secret) {
			t.Errorf("the output shows a secret: %.12s…", secret)
		}
	}
}

// TestPlanRefusesKeystoresThatDoNotOpen: apiopsctl plan opens the keystore files of
// its plan before publishing it: a real PKCS12 file with the wrong password, the same
// file declared JKS, and 700 KB of random bytes each make the plan rejected locally,
// naming the field and environment, and nothing is published.
func TestPlanRefusesKeystoresThatDoNotOpen(t *testing.T) {
	e := newTestEnv(t)
	w := fakeworker.Start(t, e.nc, fakeworker.Options{})
	const wrongPassword = "n0t-the-pw-0b7e"
	client := keystorestest.Base64(keystorestest.Spec{Password: password})
	random := make([]byte, 700<<10)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	random[0] = 0 // neither format starts so
	randomFile := base64.StdEncoding.EncodeToString(random)
	cases := []struct {
		name, file, kind, password, field, text string
	}{
		{"wrong password", client, "PKCS12", wrongPassword, "steps[0].params.keyStoreEnvironmentList[1].password", "wrong keystore password"},
		{"PKCS12 declared JKS", client, "JKS", password, "steps[0].params.keyStoreEnvironmentList[1].keyStoreType", "the file is a PKCS12 keystore, declared JKS"},
		{"700 KB of random bytes", randomFile, "PKCS12", password, "steps[0].params.keyStoreEnvironmentList[1].file", "not a keystore"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := json.Marshal(map[string]any{"id": "ks-plan", "project": "MyProject", "steps": []any{
				map[string]any{"type": "keystore.create", "params": map[string]any{"name": "client-2031", "keyStoreEnvironmentList": []any{
					map[string]any{"environmentName": "production", "file": client, "password": password, "keyStoreType": "PKCS12"},
					map[string]any{"environmentName": "staging", "file": tc.file, "password": tc.password, "keyStoreType": tc.kind}}}},
				map[string]any{"type": "credential.keystore.set", "params": map[string]any{"username": "partner-a", "keystoreName": "client-2031"}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			var out output
			code := Plan(testContext(t), []string{"--json", "--output", "json", "-"}, e.io(string(plan), &out))
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, out.stderr.String())
			}
			r := onePlanResult(t, &out)
			if r.ID != "ks-plan" || r.Status != messages.StatusRejected || r.Error == nil || r.Error.Code != messages.CodeInvalidCommand ||
				r.Error.Field != tc.field || !strings.Contains(r.Error.Message, tc.text) || !strings.Contains(r.Error.Message, `(environment "staging")`) {
				t.Errorf("result %+v, error %+v; want rejected naming %s and staging", r, r.Error, tc.field)
			}
			if !strings.Contains(out.stderr.String(), "apiopsctl plan: invalid_command: "+tc.field+` (environment "staging") is refused: `) ||
				!strings.Contains(out.stderr.String(), "the plan was not published") {
				t.Errorf("stderr:\n%s", out.stderr.String())
			}
			for _, secret := range []string{password, wrongPassword, client[:40], randomFile[:40]} {
				if strings.Contains(out.stdout.String()+out.stderr.String(), secret) {
					t.Errorf("the output shows a secret: %.12s…", secret)
				}
			}
		})
	}
	if received := w.Received(); len(received) != 0 {
		t.Errorf("the worker received %d commands, want none", len(received))
	}
}

// TestRotateOpensWhatItBuilt: rotate opens the keystore it built before publishing
// the plan, as apiopsctl plan does; a file that did not open would stop it with the
// field and environment named. (A file rotate builds from checked PEM opens; here the
// rotation is given one that does not.)
func TestRotateOpensWhatItBuilt(t *testing.T) {
	e := newTestEnv(t)
	r := rotation{project: "MyProject", keystore: "client-2031", kind: keystores.KindJKS, alias: "client",
		file: keystorestest.File(keystorestest.Spec{Password: password}), password: []byte(password),
		envs: []string{"production", "staging"}, keystoreFor: []string{"partner-a"}, undo: true}
	plan, err := r.plan("rot-opens")
	if err != nil {
		t.Fatal(err)
	}
	var out output
	code, refused := refusePlanKeystores(e.io("", &out), "rotate", "table", plan, true)
	if !refused || code != 2 {
		t.Fatalf("refused %v, exit %d; want refused with 2", refused, code)
	}
	if !strings.Contains(out.stdout.String(), "plan rot-opens rejected: invalid_command: ") ||
		!strings.Contains(out.stderr.String(), `apiopsctl rotate: invalid_command: steps[0].params.keyStoreEnvironmentList[0].keyStoreType (environment "production") is refused: keystore type does not match the file: the file is a PKCS12 keystore, declared JKS`) {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out.stdout.String(), out.stderr.String())
	}

	// What rotate builds opens; a leaf expiring soon is warned of once, by the PEM
	// check, not again for each environment's file.
	p := newPKI(t, time.Now().Add(10*24*time.Hour))
	out = output{}
	code = Rotate(testContext(t), []string{"--dry-run", "--project", "MyProject", "--keystore", "client-2031", "--type", "JKS", "--cert", p.chain, "--key", p.key,
		"--env", "production", "--env", "staging", "--keystore-for", "partner-a"}, e.io("", &out))
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	if n := strings.Count(out.stderr.String(), "warning:"); n != 1 || !strings.Contains(out.stderr.String(), "expires") {
		t.Errorf("%d warnings, want the one of the PEM check:\n%s", n, out.stderr.String())
	}
}
