package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/apiops-worker/apiops-worker/messages"
)

func envFrom(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestSettingsErrorsNameTheSetting(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	_ = os.WriteFile(tokenFile, []byte("t"), 0o600)
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "--apiops-url (APIOPS_URL) is required"},
		{[]string{"--apiops-url", "http://x"}, nil, "APIOPS_TOKEN"},
		{[]string{"--apiops-url", "http://x", "--apiops-token-file", "/no/such/file"}, nil, "--apiops-token-file (APIOPS_TOKEN_FILE)"},
		{[]string{"--demo", "--log-format", "xml"}, nil, "--log-format"},
		{[]string{"--demo"}, map[string]string{"APIOPS_WORKER_CONCURRENCY": "many"}, "APIOPS_WORKER_CONCURRENCY"},
		{[]string{"--demo", "--nats-user", "u"}, nil, "NATS_PASSWORD"},
		{[]string{"--demo", "--apiops-client-cert", "c.pem"}, nil, "--apiops-client-key"},
		{[]string{"--demo", "--password", "x"}, nil, "flag provided but not defined: -password"},
		{[]string{"--demo", "extra"}, nil, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		_, err := parseSettings(tc.args, envFrom(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want it to say %q", tc.args, tc.env, err, tc.want)
		}
	}
	s, err := parseSettings([]string{"--concurrency", "7"}, envFrom(map[string]string{
		"APIOPS_URL": "http://apiops", "APIOPS_TOKEN_FILE": tokenFile, "APIOPS_WORKER_CONCURRENCY": "3",
		"APIOPS_WORKER_RETRY_MAX": "1m", "NATS_URL": "nats://n:4222", "APIOPS_TOKEN": " tok ",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.worker.Concurrency != 7 || s.worker.RetryMax != time.Minute || s.natsURL != "nats://n:4222" || s.apiopsURL != "http://apiops" || s.apiopsToken != "tok" {
		t.Errorf("settings %+v", s)
	}
	if code := Run(context.Background(), []string{"--help"}, envFrom(nil), io.Discard); code != 0 {
		t.Errorf("--help exits %d", code)
	}
	if code := Run(context.Background(), nil, envFrom(nil), io.Discard); code != 2 {
		t.Errorf("missing settings exit %d, want 2", code)
	}
}

// lockedBuffer is written by the program's logger and read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestDemoSingleBinary runs the program as `apiops-worker --demo`: embedded NATS with
// JetStream and the simulator, a command in, its result out, a clean exit on cancel.
func TestDemoSingleBinary(t *testing.T) {
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() {
		exit <- Run(ctx, []string{"--demo", "--demo-seed", "../../testdata/apiops-seed.json", "--listen", "127.0.0.1:-1", "--data-dir", t.TempDir()}, envFrom(nil), logs)
	}()
	var url string
	deadline := time.Now().Add(10 * time.Second)
	for url == "" {
		started, embeddedURL := false, ""
		for _, l := range logs.lines() {
			started = started || l["msg"] == "worker started"
			if u, ok := l["url"].(string); ok && strings.HasPrefix(u, "nats://") {
				embeddedURL = u
			}
		}
		if started {
			url = embeddedURL
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not start; logs: %+v", logs.lines())
		}
		time.Sleep(10 * time.Millisecond)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inbox := nats.NewInbox()
	replies, _ := nc.SubscribeSync(inbox)
	body := `{"id":"demo-1","replyTo":"` + inbox + `","params":{"username":"api-user","keystoreName":"trust-2026"}}`
	if _, err := nc.Request("apiops.cmd.MyProject.credential.truststore.set", []byte(body), 5*time.Second); err != nil {
		t.Fatalf("publish to the command stream: %v", err)
	}
	reply, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res messages.Result
	if err := json.Unmarshal(reply.Data, &res); err != nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("result %s", reply.Data)
	}
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after cancel")
	}
}
