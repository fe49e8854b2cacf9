package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/internal/programs/ctl"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/internal/testkit/workertest"
	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
	"github.com/apiops-worker/apiops-worker/worker"
)

// spy records every message on the account, as a core subscription on ">" sees it.
type spy struct {
	mu   sync.Mutex
	seen bytes.Buffer
}

func (s *spy) record(m *nats.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(&s.seen, "%s %v %s\n", m.Subject, m.Header, m.Data)
}

func (s *spy) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen.String()
}

// sealedWorker is the real program with --seal-keys, against a real NATS server and the
// simulator over HTTP.
type sealedWorker struct {
	t        *testing.T
	url, api string
	keys     string
	token    string
	logs     *watchedLog
	httpAddr string
	stop     func()
	// earlier is what the runs before this one logged and served as metrics.
	earlier strings.Builder
}

func (w *sealedWorker) start(extra ...string) {
	w.t.Helper()
	w.logs = newWatchedLog()
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	args := append([]string{"--nats-url", w.url, "--apiops-url", w.api, "--http-addr", "127.0.0.1:0",
		"--seal-keys", w.keys, "--retry-initial", "10ms"}, extra...)
	go func() { exit <- Run(ctx, args, envFrom(map[string]string{"APIOPS_TOKEN": w.token}), w.logs) }()
	w.stop = func() {
		w.earlier.WriteString(w.metrics())
		cancel()
		if code := <-exit; code != 0 {
			w.t.Errorf("the worker exited with %d", code)
		}
		w.earlier.WriteString(w.logs.String())
	}
	w.logs.waitFor(w.t, `"msg":"worker started"`, 30*time.Second)
	w.logs.waitFor(w.t, `"msg":"serving metrics and health"`, 5*time.Second)
	var line struct {
		Addr string `json:"addr"`
	}
	for l := range strings.SplitSeq(w.logs.String(), "\n") {
		if strings.Contains(l, "serving metrics and health") {
			_ = json.Unmarshal([]byte(l), &line)
		}
	}
	w.httpAddr = line.Addr
}

func (w *sealedWorker) metrics() string {
	resp, err := http.Get("http://" + w.httpAddr + "/metrics")
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestSealedSecrets runs sealed keystore commands through the worker and checks that
// their secrets reach APIOps and nothing else: not the bus, the streams, the bucket,
// the logs or the metrics. Every value that cannot be opened where it was found is
// rejected naming its field, with no APIOps request; a failed sealed command's dead
// letter keeps its sealed values and replays; keys rotate, and a restart changes
// nothing.
func TestSealedSecrets(t *testing.T) {
	sim, apiURL, token := workertest.Simulator(t, "../../../testdata/apiops-seed.json")
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	keys := t.TempDir()
	oldKey, err := seal.GenerateKeyFile(filepath.Join(keys, "2026-01.xk"))
	if err != nil {
		t.Fatal(err)
	}
	saved := sealKeysReload
	sealKeysReload = 200 * time.Millisecond // so that a removed key is noticed within the test
	t.Cleanup(func() { sealKeysReload = saved })

	w := &sealedWorker{t: t, url: srv.ClientURL(), api: apiURL, keys: keys, token: token}
	w.start()
	defer func() { w.stop() }()

	// The attacker: everything on the account.
	all := &spy{}
	if _, err := nc.Subscribe(">", all.record); err != nil {
		t.Fatal(err)
	}
	markerPassword := "MARKER-PASSWORD-" + strings.Repeat("p", 8)
	markerFile := keystorestest.File(keystorestest.Spec{Password: markerPassword, TrustStore: true}) // the worker opens it
	markers := []string{markerPassword, string(markerFile), base64.StdEncoding.EncodeToString(markerFile)}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sealing, err := client.New(nc, client.WithDiscoveredSealKey())
	if err != nil {
		t.Fatal(err)
	}
	if sealing.SealKey() != oldKey {
		t.Fatalf("discovered key %s, want %s", sealing.SealKey(), oldKey)
	}
	keystoreCmd := func(id, typ, name, password string, file []byte) *messages.Command {
		env := []messages.KeyStoreEnvironment{{EnvironmentName: "production", KeyStoreType: "PKCS12",
			File: messages.NewSecret(base64.StdEncoding.EncodeToString(file)), Password: messages.NewSecret(password)}}
		var params messages.Params = &messages.KeystoreCreate{Name: name, KeyStoreEnvironmentList: env}
		if typ == "keystore.update" {
			params = &messages.KeystoreUpdate{KeystoreName: name, KeyStoreEnvironmentList: env}
		}
		return &messages.Command{ID: id, Type: typ, Project: "MyProject", Params: params}
	}

	// 1. A sealed keystore.create runs, and APIOps gets the secrets.
	res, err := sealing.Request(ctx, keystoreCmd("sealed-create", "keystore.create", "sealed-2027", markerPassword, markerFile))
	if err != nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("sealed create: %v %+v", err, res)
	}
	ks, ok := sim.Keystore("MyProject", "sealed-2027")
	if !ok || ks.Environments[0].Password != markerPassword || !bytes.Equal(ks.Environments[0].File, markerFile) {
		t.Fatalf("APIOps did not get the opened secrets: %+v", ks)
	}

	js, _ := jetstream.New(nc)
	// The record's secrets are digested with a key derived from the seal keys: no digest
	// key is kept in the bucket, where whoever reads it could test guesses against it.
	if kv, err := js.KeyValue(ctx, worker.DefaultIdempotencyBucket); err != nil {
		t.Fatal(err)
	} else if _, err := kv.Get(ctx, "digest-key"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("with seal keys, the bucket holds a digest key: %v", err)
	}

	// 2. A sealed keystore.update that APIOps refuses: its dead letter keeps the sealed
	// values, and replays to success once APIOps accepts it.
	res, err = sealing.Request(ctx, keystoreCmd("sealed-update", "keystore.update", "not-yet", markerPassword, markerFile))
	if err != nil || res.Status != messages.StatusFailed {
		t.Fatalf("sealed update of a missing keystore: %v %+v", err, res)
	}
	dead, err := js.Stream(ctx, "APIOPS_DEAD")
	if err != nil {
		t.Fatal(err)
	}
	letter, err := dead.GetLastMsgForSubject(ctx, "apiops.dlq.MyProject.keystore.update")
	if err != nil {
		t.Fatal(err)
	}
	if letter.Header.Get(messages.HeaderRedacted) != "" || !bytes.Contains(letter.Data, []byte(`"sealed":"`)) {
		t.Fatalf("the dead letter lost its sealed values: %v %s", letter.Header, letter.Data)
	}
	if res, err := sealing.Request(ctx, keystoreCmd("make-it-exist", "keystore.create", "not-yet", "other-password", keystorestest.File(keystorestest.Spec{Password: "other-password"}))); err != nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("create: %v %+v", err, res)
	}
	replayed, err := nc.SubscribeSync("apiops.result.MyProject.keystore.update")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := ctl.DLQ(ctx, []string{"replay", "--id", "sealed-update", "--nats-url", srv.ClientURL()}, ctl.IO{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("dlq replay: exit %d: %s", code, out.String())
	}
	for {
		msg, err := replayed.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("no result of the replay: %v", err)
		}
		var r messages.Result
		if json.Unmarshal(msg.Data, &r) == nil && r.ID == "sealed-update:replay-1" {
			if r.Status != messages.StatusSucceeded {
				t.Fatalf("replay: %s", msg.Data)
			}
			break
		}
	}
	if ks, _ := sim.Keystore("MyProject", "not-yet"); ks.Environments[0].Password != markerPassword {
		t.Fatal("the replay did not reach APIOps with the opened password")
	}

	// 3. Values that must not open: each rejected, naming its field, no APIOps request.
	sealed := func(key, project, field, value string) messages.Sealed {
		s, err := seal.Seal(key, messages.SealedContent{Project: project, Field: field, Value: value})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	strangerKey := func() string {
		pub, err := seal.GenerateKeyFile(filepath.Join(t.TempDir(), "stranger.xk"))
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}()
	good := sealed(oldKey, "MyProject", "password", markerPassword)
	tampered := good
	box, _ := base64.StdEncoding.DecodeString(good.Box)
	box[len(box)-1] ^= 1
	tampered.Box = base64.StdEncoding.EncodeToString(box)
	truncated := good
	truncated.Box = base64.StdEncoding.EncodeToString(box[:40])
	fileValue := sealed(oldKey, "MyProject", "file", base64.StdEncoding.EncodeToString(markerFile))
	for _, tc := range []struct {
		name     string
		password any
		want     string
	}{
		{"for a key the worker lacks", sealed(strangerKey, "MyProject", "password", markerPassword), "which this worker does not have"},
		{"tampered", tampered, "does not open"},
		{"truncated", truncated, "xkv1"},
		{"for another project", sealed(oldKey, "TeamA", "password", markerPassword), "sealed for project"},
		{"for another field", sealed(oldKey, "MyProject", "file", markerPassword), `sealed for a "file" field`},
		{"not an object of the contract", map[string]string{"sealed": good.Box, "for": good.For}, "from is required"},
	} {
		before := len(sim.Requests())
		body, _ := json.Marshal(map[string]any{"id": "bad-" + strings.ReplaceAll(tc.name, " ", "-"), "params": map[string]any{
			"name": "never", "keyStoreEnvironmentList": []any{map[string]any{"environmentName": "production", "keyStoreType": "PKCS12",
				"file": fileValue, "password": tc.password}}}})
		r := publishAndAwait(t, nc, "apiops.cmd.MyProject.keystore.create", string(body))
		if r.Status != messages.StatusRejected || r.Error == nil || !strings.HasPrefix(r.Error.Field, "params.keyStoreEnvironmentList[0].password") ||
			!strings.Contains(r.Error.Error(), tc.want) {
			t.Errorf("%s: result %+v %+v, want rejected at the password, saying %q", tc.name, r, r.Error, tc.want)
		}
		if n := len(sim.Requests()); n != before {
			t.Errorf("%s: %d APIOps requests", tc.name, n-before)
		}
	}

	// 4. Rotation: a new key is announced and opens; the old one still opens until it
	// is removed; then its values are rejected naming it.
	newKey, err := seal.GenerateKeyFile(filepath.Join(keys, "2026-06.xk"))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		key, _, err := client.DiscoverSealKey(ctx, nc, "apiops")
		if err == nil && key == newKey {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workers still announce %s, not the new key", key)
		}
	}
	rotated, err := client.New(nc, client.WithSealKey(newKey))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := rotated.Request(ctx, keystoreCmd("new-key", "keystore.create", "rotated-2027", markerPassword, markerFile)); err != nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("sealed for the new key: %v %+v", err, res)
	}
	if res, err := sealing.Request(ctx, keystoreCmd("old-key", "keystore.create", "old-key-2027", markerPassword, markerFile)); err != nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("sealed for the old key, still held: %v %+v", err, res)
	}
	if err := os.Remove(filepath.Join(keys, "2026-01.xk")); err != nil {
		t.Fatal(err)
	}
	w.logs.waitFor(t, `"msg":"sealed secrets: keys read again","current":"`+newKey+`","keys":1`, 10*time.Second)
	res, err = sealing.Request(ctx, keystoreCmd("removed-key", "keystore.create", "removed-2027", markerPassword, markerFile))
	if err != nil || res.Status != messages.StatusRejected || !strings.Contains(res.Error.Message, oldKey) {
		t.Fatalf("sealed for a removed key: %v %+v", err, res)
	}

	// 5. A restart, now requiring sealed secrets: sealing still works, and plaintext is
	// rejected.
	w.stop()
	w.start("--require-sealed")
	if res, err := rotated.Request(ctx, keystoreCmd("after-restart", "keystore.create", "restart-2027", markerPassword, markerFile)); err != nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("sealed, after a restart: %v %+v", err, res)
	}
	plain, _ := client.New(nc)
	res, err = plain.Request(ctx, keystoreCmd("plaintext", "keystore.create", "plain-2027", "not-a-marker", []byte("not a marker")))
	if err != nil || res.Status != messages.StatusRejected || res.Error.Field != "params.keyStoreEnvironmentList[0].file" || !strings.Contains(res.Error.Message, "must be sealed") {
		t.Fatalf("plaintext under --require-sealed: %v %+v %+v", err, res, res.Error)
	}

	// 6. The secrets appear nowhere but at APIOps.
	places := map[string]string{"the bus (a subscription on >)": all.String(), "the logs and metrics of the first run": w.earlier.String(),
		"the logs": w.logs.String(), "the metrics": w.metrics()}
	for _, name := range []string{"APIOPS_COMMANDS", "APIOPS_RESULTS", "APIOPS_DEAD", "KV_APIOPS_IDEMPOTENCY"} {
		places["stream "+name] = streamContent(t, js, name)
	}
	for place, content := range places {
		for _, m := range markers {
			if strings.Contains(content, m) {
				t.Errorf("%s holds a secret in plaintext (%.20s…)", place, m)
			}
		}
	}
	if !strings.Contains(places["stream APIOPS_DEAD"], `"sealed":"`) || !strings.Contains(w.earlier.String(), "sealed-update") ||
		!strings.Contains(w.earlier.String(), "apiops_worker_commands_finished_total") {
		t.Error("the check read no sealed dead letter, or not the first run's logs and metrics: it proves nothing")
	}
}

// streamContent is every message a stream holds, headers and data.
func streamContent(t *testing.T, js jetstream.JetStream, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		fmt.Fprintf(&out, "%s %v %s\n", msg.Subject, msg.Header, msg.Data)
	}
	return out.String()
}
