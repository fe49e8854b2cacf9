package ctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/internal/testkit/fakeworker"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

// keystoreLine is a keystore.create line with plaintext secrets.
func keystoreLine(id string) string {
	return `{"id":"` + id + `","type":"keystore.create","project":"MyProject","params":{"name":"k-` + id + `","keyStoreEnvironmentList":[{"environmentName":"production","file":"` + keystoreFile + `","password":"` + password + `","keyStoreType":"PKCS12"}]}}`
}

// sealedLine is line with its secrets sealed for key.
func sealedLine(t *testing.T, line, key string) string {
	t.Helper()
	cmd, err := messages.DecodeLine([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.SealSecrets(seal.For(key)); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// newKey makes a worker key directory with one key and returns its keyring.
func newKey(t *testing.T) *seal.Keyring {
	t.Helper()
	dir := t.TempDir()
	if _, err := seal.GenerateKeyFile(filepath.Join(dir, "k.xk")); err != nil {
		t.Fatal(err)
	}
	ring, err := seal.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

func noSecrets(t *testing.T, what, text string) {
	t.Helper()
	if strings.Contains(text, password) || strings.Contains(text, keystoreFile) {
		t.Errorf("%s shows a secret:\n%s", what, text)
	}
}

func TestSealKeygen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "2027-05.xk")
	var out output
	e := &testEnv{vars: map[string]string{}}
	if code := Seal(testContext(t), []string{"keygen", path}, e.io("", &out)); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	pub := strings.TrimSpace(out.stdout.String())
	if err := seal.CheckPublicKey(pub); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", st, err)
	}
	ring, err := seal.LoadDir(filepath.Dir(path))
	if err != nil || ring.Current() != pub {
		t.Fatalf("the key file does not hold %s: %v", pub, err)
	}

	out = output{}
	if code := Seal(testContext(t), []string{"keygen", path}, e.io("", &out)); code != 1 || !strings.Contains(out.stderr.String(), "apiopsctl seal keygen: "+path+" exists: not overwriting it") {
		t.Errorf("again: exit %d, stderr %q", code, out.stderr.String())
	}
	for _, args := range [][]string{{"keygen"}, {"nope"}, {}} {
		out = output{}
		if code := Seal(testContext(t), args, e.io("", &out)); code != 1 || !strings.Contains(out.stderr.String(), "apiopsctl seal") {
			t.Errorf("%q: exit %d, stderr %q", args, code, out.stderr.String())
		}
	}
}

func TestSealPubkey(t *testing.T) {
	e := newTestEnv(t)
	a, b := newKey(t).Current(), newKey(t).Current()

	var out output
	if code := Seal(testContext(t), []string{"pubkey"}, e.io("", &out)); code != 1 || !strings.Contains(out.stderr.String(), "no apiops-worker instance answered") {
		t.Errorf("no worker: exit %d, stderr %q", code, out.stderr.String())
	}

	fakeworker.Announce(t, e.nc, "", a)
	out = output{}
	if code := Seal(testContext(t), []string{"pubkey"}, e.io("", &out)); code != 0 || strings.TrimSpace(out.stdout.String()) != a || out.stderr.Len() != 0 {
		t.Errorf("one worker: exit %d, stdout %q, stderr %q; want %s", code, out.stdout.String(), out.stderr.String(), a)
	}

	// Mid-rotation: two instances announce a, one b and holds a as well.
	fakeworker.Announce(t, e.nc, "", a)
	fakeworker.Announce(t, e.nc, "", b, a)
	out = output{}
	if code := Seal(testContext(t), []string{"pubkey"}, e.io("", &out)); code != 0 || strings.TrimSpace(out.stdout.String()) != a {
		t.Fatalf("disagreeing: exit %d, stdout %q, stderr %q; want %s", code, out.stdout.String(), out.stderr.String(), a)
	}
	note := out.stderr.String()
	for _, want := range []string{"the 3 instances announce different keys", "  " + a + ": ", "  " + b + ": ", "version 0.0.0-fake"} {
		if !strings.Contains(note, want) {
			t.Errorf("stderr lacks %q:\n%s", want, note)
		}
	}
	if strings.Index(note, a) > strings.Index(note, b) {
		t.Errorf("the key most announce is not listed first:\n%s", note)
	}

	// Another prefix has its own workers.
	out = output{}
	e.vars["APIOPS_PREFIX"] = "other"
	if code := Seal(testContext(t), []string{"pubkey"}, e.io("", &out)); code != 1 || !strings.Contains(out.stderr.String(), `no apiops-worker instance with prefix "other" answered`) {
		t.Errorf("other prefix: exit %d, stderr %q", code, out.stderr.String())
	}
}

func TestSubmitSeal(t *testing.T) {
	e := newTestEnv(t)
	ring := newKey(t)
	key := ring.Current()
	w := fakeworker.Start(t, e.nc, fakeworker.Options{})
	fakeworker.Announce(t, e.nc, "", key)

	run := func(args []string, input string) (int, output) {
		var out output
		code := Submit(testContext(t), args, e.io(input, &out))
		return code, out
	}
	input := keystoreLine("seal-0001") + "\n" + sealedLine(t, keystoreLine("seal-0002"), key)
	code, out := run([]string{"--seal", "--output", "json", "-"}, input)
	if code != 0 || len(lines(out.stdout.String())) != 2 || !strings.Contains(out.stderr.String(), "sealing secrets for "+key) {
		t.Fatalf("--seal: exit %d, stdout:\n%s\nstderr:\n%s", code, out.stdout.String(), out.stderr.String())
	}
	e.vars["APIOPS_SEAL_KEY"] = key
	code, out = run([]string{"--output=json", "-"}, keystoreLine("seal-0003"))
	if code != 0 {
		t.Fatalf("APIOPS_SEAL_KEY: exit %d, stderr:\n%s", code, out.stderr.String())
	}
	delete(e.vars, "APIOPS_SEAL_KEY")
	code, out = run([]string{"--seal-key", key, "-"}, keystoreLine("seal-0004"))
	if code != 0 {
		t.Fatalf("--seal-key: exit %d, stderr:\n%s", code, out.stderr.String())
	}

	received := w.Received()
	if len(received) != 4 {
		t.Fatalf("the worker received %d commands, want 4", len(received))
	}
	for _, m := range received {
		noSecrets(t, "a command published", string(m.Data))
		cmd, err := messages.DecodeWith("MyProject", "keystore.create", m.Data, messages.DecodeOptions{Opener: ring, RequireSealed: true})
		if err != nil {
			t.Errorf("%s: %v", m.Header.Get(messages.HeaderMsgID), err)
			continue
		}
		env := cmd.Params.(*messages.KeystoreCreate).KeyStoreEnvironmentList[0]
		if env.Password.Reveal() != password || env.File.Reveal() != keystoreFile {
			t.Errorf("%s does not open to the secrets submitted", cmd.ID)
		}
	}

	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--seal", "--seal-key", key, "-"}, "", "give --seal (seal for the key the workers announce) or --seal-key, not both"},
		{[]string{"--seal-key", "XNOTAKEY", "-"}, "", `--seal-key (APIOPS_SEAL_KEY): "XNOTAKEY" is not a public curve key`},
		{[]string{"-"}, "SXNOTAKEY", "--seal-key (APIOPS_SEAL_KEY): the 9 characters given, starting with S (a seed?), is not a public curve key"},
		{[]string{"--seal", "--prefix", "other", "-"}, "", `no apiops-worker instance with prefix "other" answered`},
	} {
		e.vars["APIOPS_SEAL_KEY"] = tc.env
		code, out := run(tc.args, keystoreLine("seal-bad"))
		if code != 1 || !strings.HasPrefix(out.stderr.String(), "apiopsctl submit: ") || !strings.Contains(out.stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %q", tc.args, code, out.stderr.String(), tc.want)
		}
	}
	// --seal wins over the environment's key.
	e.vars["APIOPS_SEAL_KEY"] = newKey(t).Current()
	if code, out := run([]string{"--seal", "-"}, keystoreLine("seal-0005")); code != 0 || !strings.Contains(out.stderr.String(), "sealing secrets for "+key) {
		t.Errorf("--seal with APIOPS_SEAL_KEY: exit %d, stderr:\n%s", code, out.stderr.String())
	}
}

func TestValidateSealKey(t *testing.T) {
	a, b := newKey(t).Current(), newKey(t).Current()
	input := strings.Join([]string{
		keystoreLine("plain"),
		sealedLine(t, keystoreLine("for-a"), a),
		sealedLine(t, keystoreLine("for-b"), b),
		`{"id":"malformed","type":"keystore.create","project":"MyProject","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"e","file":{"sealed":"eGt2MQ==","for":"` + a + `","from":"` + b + `"},"password":"x","keyStoreType":"JKS"}]}}`,
	}, "\n")
	e := &testEnv{vars: map[string]string{}}

	// Without --seal-key: sealed values of either key are well-formed.
	var out output
	if code := Validate([]string{"-"}, e.io(input, &out)); code != 2 || !strings.Contains(out.stderr.String(), "1 of 4 commands are invalid") {
		t.Fatalf("exit %d, stderr:\n%s", code, out.stderr.String())
	}
	var r messages.Result
	if err := json.Unmarshal(out.stdout.Bytes(), &r); err != nil || r.ID != "malformed" || r.Error.Field != "params.keyStoreEnvironmentList[0].file.sealed" {
		t.Errorf("rejection %s: %v", out.stdout.String(), err)
	}

	out = output{}
	if code := Validate([]string{"--seal-key", a, "-"}, e.io(input, &out)); code != 2 {
		t.Fatalf("--seal-key: exit %d, stderr:\n%s", code, out.stderr.String())
	}
	rejected := lines(out.stdout.String())
	if len(rejected) != 2 {
		t.Fatalf("%d rejections, want 2:\n%s", len(rejected), out.stdout.String())
	}
	if err := json.Unmarshal([]byte(rejected[0]), &r); err != nil || r.ID != "for-b" || r.Status != messages.StatusRejected ||
		r.Error.Field != "params.keyStoreEnvironmentList[0].file" || r.Error.Message != "is sealed for key "+b+", not for --seal-key "+a {
		t.Errorf("rejection %s: %v", rejected[0], err)
	}
	if !strings.Contains(out.stderr.String(), "line 3: invalid_command: params.keyStoreEnvironmentList[0].file is sealed for key "+b) {
		t.Errorf("stderr:\n%s", out.stderr.String())
	}
	noSecrets(t, "validate's output", out.stdout.String()+out.stderr.String())

	e.vars["APIOPS_SEAL_KEY"] = b
	out = output{}
	if code := Validate([]string{"-"}, e.io(sealedLine(t, keystoreLine("for-b"), b), &out)); code != 0 {
		t.Errorf("APIOPS_SEAL_KEY: exit %d, stderr:\n%s", code, out.stderr.String())
	}
	out = output{}
	if code := Validate([]string{"--seal-key", "nope", "-"}, e.io("", &out)); code != 1 || !strings.Contains(out.stderr.String(), "apiopsctl validate: --seal-key (APIOPS_SEAL_KEY): ") {
		t.Errorf("a bad key: exit %d, stderr %q", code, out.stderr.String())
	}
}
