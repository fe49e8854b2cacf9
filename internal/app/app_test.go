package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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
		{[]string{"--demo"}, map[string]string{"NATS_INBOX_PREFIX": "_INBOX.>"}, `--nats-inbox-prefix (NATS_INBOX_PREFIX) "_INBOX.>" must not hold wildcards`},
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
// JetStream and the simulator, commands in, results out, metrics, health and NATS
// service discovery that match what happened, a clean exit on cancel.
func TestDemoSingleBinary(t *testing.T) {
	d := startDemo(t, nil)
	httpAddr := d.httpAddr
	nc, err := nats.Connect(d.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inbox := nats.NewInbox()
	replies, _ := nc.SubscribeSync(inbox)
	for _, c := range []struct{ subject, body string }{
		{"apiops.cmd.MyProject.credential.truststore.set", `{"id":"demo-ok","replyTo":"` + inbox + `","params":{"username":"api-user","keystoreName":"trust-2026"}}`},
		{"apiops.cmd.MyProject.credential.truststore.set", `{"id":"demo-failed","replyTo":"` + inbox + `","params":{"username":"nobody","keystoreName":"trust-2026"}}`},
		{"apiops.cmd.MyProject.keystore.delete", `{"id":"demo-rejected","replyTo":"` + inbox + `","params":{}}`},
	} {
		if _, err := nc.Request(c.subject, []byte(c.body), 5*time.Second); err != nil {
			t.Fatalf("publish to the command stream: %v", err)
		}
	}
	statuses := map[string]messages.Status{}
	for range 3 {
		reply, err := replies.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var res messages.Result
		if err := json.Unmarshal(reply.Data, &res); err != nil {
			t.Fatal(err)
		}
		statuses[res.ID] = res.Status
	}
	if statuses["demo-ok"] != messages.StatusSucceeded || statuses["demo-failed"] != messages.StatusFailed || statuses["demo-rejected"] != messages.StatusRejected {
		t.Fatalf("statuses %v", statuses)
	}

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get("/readyz"); code != 200 || body != "ready: active\n" {
		t.Errorf("/readyz %d %q", code, body)
	}
	// The results are published before the ack and the metrics; wait until the
	// counters caught up rather than guessing a time.
	want := map[string]float64{
		`apiops_worker_commands_finished_total{status="succeeded",type="credential.truststore.set"}`:         1,
		`apiops_worker_commands_finished_total{status="failed",type="credential.truststore.set"}`:            1,
		`apiops_worker_commands_finished_total{status="rejected",type="keystore.delete"}`:                    1,
		`apiops_worker_dead_letters_total{status="failed",type="credential.truststore.set"}`:                 1,
		`apiops_worker_dead_letters_total{status="rejected",type="keystore.delete"}`:                         1,
		`apiops_worker_apiops_request_duration_seconds_count{code="2xx",type="credential.truststore.set"}`:   1,
		`apiops_worker_apiops_request_duration_seconds_count{code="4xx",type="credential.truststore.set"}`:   1,
		`apiops_worker_publish_to_result_seconds_count{status="succeeded",type="credential.truststore.set"}`: 1,
		`apiops_worker_publish_to_result_seconds_count{status="rejected",type="keystore.delete"}`:            1,
		`apiops_worker_command_errors_total{code="bad_request",type="credential.truststore.set"}`:            1,
		`apiops_worker_command_errors_total{code="invalid_command",type="keystore.delete"}`:                  1,
		`apiops_worker_oldest_pending_age_seconds`:                                                           0,
		`apiops_worker_commands_in_flight`:                                                                   0,
		`apiops_worker_paused{reason="outage"}`:                                                              0,
		`apiops_worker_paused{reason="unauthorized"}`:                                                        0,
		`apiops_worker_consumer_pending_commands`:                                                            0,
		`apiops_worker_active`: 1,
	}
	var scraped map[string]float64
	for end := time.Now().Add(5 * time.Second); ; {
		_, body := get("/metrics")
		scraped = parseMetrics(body)
		if matches(scraped, want) || time.Now().After(end) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for k, v := range want {
		if got, ok := scraped[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if n := scraped[`apiops_worker_retries_total{type="credential.truststore.set"}`]; n != 0 {
		t.Errorf("%v retries counted where there were none", n)
	}

	// NATS service discovery: the instance answers PING and STATS with its counts.
	if _, err := nc.Request("$SRV.PING.apiops-worker", nil, 2*time.Second); err != nil {
		t.Errorf("$SRV.PING: %v", err)
	}
	stats, err := nc.Request("$SRV.STATS.apiops-worker", nil, 2*time.Second)
	if err != nil {
		t.Fatalf("$SRV.STATS: %v", err)
	}
	var st struct {
		Name      string `json:"name"`
		Endpoints []struct {
			Data struct {
				Ready    string `json:"ready"`
				Role     string `json:"role"`
				Finished int    `json:"commands_finished"`
				Failed   int    `json:"commands_not_succeeded"`
			} `json:"data"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(stats.Data, &st); err != nil || st.Name != "apiops-worker" || len(st.Endpoints) != 1 {
		t.Fatalf("stats %s", stats.Data)
	}
	if d := st.Endpoints[0].Data; d.Ready != "yes" || d.Role != "active" || d.Finished != 3 || d.Failed != 2 {
		t.Errorf("stats data %+v", d)
	}
	if status, err := nc.Request("apiops.worker.status", nil, 2*time.Second); err != nil || !strings.Contains(string(status.Data), `"commands_finished":3`) {
		t.Errorf("status endpoint: %v %s", err, status.Data)
	}

	if code := d.stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// parseMetrics reads Prometheus text: "name{labels} value" lines by name and labels.
func parseMetrics(body string) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func matches(got, want map[string]float64) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
		if _, ok := got[k]; !ok {
			return false
		}
	}
	return true
}
