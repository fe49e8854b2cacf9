package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/internal/testkit/workertest"
	"github.com/apiops-worker/apiops-worker/messages"
)

func envFrom(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestSettingsErrorsNameTheSetting(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	_ = os.WriteFile(tokenFile, []byte("t"), 0o600)
	emptySecretFile := filepath.Join(t.TempDir(), "empty-secret")
	_ = os.WriteFile(emptySecretFile, nil, 0o600)
	withURL, id := []string{"--apiops-url", "http://x"}, []string{"--apiops-url", "http://x", "--apiops-client-id", "u"}
	secret := map[string]string{"APIOPS_CLIENT_SECRET": "s"}
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "--apiops-url (APIOPS_URL) is required"},
		{[]string{"--apiops-url", "http://x"}, nil, "APIOPS_TOKEN"},
		{withURL, nil, "the APIOps token or client credentials are missing"},
		{[]string{"--apiops-client-id", "u"}, secret, "--apiops-url (APIOPS_URL) is required"},
		{id, nil, "--apiops-client-id (APIOPS_CLIENT_ID) needs its secret"},
		{withURL, secret, "APIOPS_CLIENT_SECRET is set without --apiops-client-id (APIOPS_CLIENT_ID)"},
		{withURL, map[string]string{"APIOPS_CLIENT_SECRET_FILE": tokenFile}, "APIOPS_CLIENT_SECRET_FILE is set without --apiops-client-id"},
		{id, map[string]string{"APIOPS_CLIENT_SECRET": "s", "APIOPS_TOKEN": "t"}, "--apiops-client-id (APIOPS_CLIENT_ID) and a token"},
		{append(id, "--apiops-token-file", tokenFile), secret, "choose one"},
		{id, map[string]string{"APIOPS_CLIENT_SECRET_FILE": "/no/such/secret"}, "APIOPS_CLIENT_SECRET_FILE: read APIOps client secret file"},
		{id, map[string]string{"APIOPS_CLIENT_SECRET_FILE": emptySecretFile}, "APIOPS_CLIENT_SECRET_FILE: APIOps client secret file " + emptySecretFile + " is empty"},
		{append(withURL, "--apiops-token-url", "http://x/t"), map[string]string{"APIOPS_TOKEN": "t"}, "--apiops-token-url (APIOPS_TOKEN_URL) is only used with --apiops-client-id"},
		{append(id, "--apiops-token-url", "x/t"), secret, "--apiops-token-url (APIOPS_TOKEN_URL) must be an http:// or https:// URL"},
		{[]string{"--apiops-url", "apinizer.example.com", "--apiops-client-id", "u"}, secret, "--apiops-url (APIOPS_URL) must be an http:// or https:// URL"},
		{[]string{"--demo", "--apiops-client-secret", "s"}, nil, "flag provided but not defined: -apiops-client-secret"},
		{[]string{"--demo", "--apiops-client-secret-file", tokenFile}, nil, "flag provided but not defined: -apiops-client-secret-file"},
		{[]string{"--apiops-url", "http://x", "--apiops-token-file", "/no/such/file"}, nil, "--apiops-token-file (APIOPS_TOKEN_FILE)"},
		{[]string{"--demo", "--log-format", "xml"}, nil, "--log-format"},
		{[]string{"--demo"}, map[string]string{"APIOPS_WORKER_CONCURRENCY": "many"}, "APIOPS_WORKER_CONCURRENCY"},
		{[]string{"--demo", "--nats-user", "u"}, nil, "NATS_PASSWORD"},
		{[]string{"--demo", "--apiops-client-cert", "c.pem"}, nil, "--apiops-client-key"},
		{[]string{"--demo", "--password", "x"}, nil, "flag provided but not defined: -password"},
		{[]string{"--demo", "extra"}, nil, `unexpected argument "extra"`},
		{[]string{"--demo"}, map[string]string{"NATS_INBOX_PREFIX": "_INBOX.>"}, `--nats-inbox-prefix (NATS_INBOX_PREFIX) "_INBOX.>" must not hold wildcards`},
		{[]string{"--demo", "--watch-projects", "MyProject,Team.B"}, nil, `--watch-projects (APIOPS_WORKER_WATCH_PROJECTS): project "Team.B" must be one subject token`},
		{[]string{"--demo", "--watch-projects", "MyProject", "--watch-interval", "0s"}, nil, "--watch-interval (APIOPS_WORKER_WATCH_INTERVAL) must be positive"},
		{[]string{"--demo"}, map[string]string{"APIOPS_WORKER_WATCH_INTERVAL": "hourly"}, "APIOPS_WORKER_WATCH_INTERVAL"},
		{[]string{"--demo", "--watch-keystore-passwords", tokenFile}, nil, "--watch-keystore-passwords (APIOPS_WORKER_WATCH_KEYSTORE_PASSWORDS) is only used with --watch-projects"},
		{[]string{"--demo", "--watch-projects", "P", "--watch-keystore-passwords", tokenFile}, nil, "is not a directory"},
		{[]string{"--demo", "--watch-projects", "P", "--watch-keystore-passwords", "/no/such/dir"}, nil, "--watch-keystore-passwords (APIOPS_WORKER_WATCH_KEYSTORE_PASSWORDS): stat /no/such/dir"},
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
	var help bytes.Buffer
	if code := Run(context.Background(), []string{"--help"}, envFrom(nil), &help); code != 0 {
		t.Errorf("--help exits %d", code)
	}
	for line := range strings.Lines(help.String()) {
		if strings.HasPrefix(strings.TrimSpace(line), "-") && strings.Contains(strings.Fields(line)[0], "secret") {
			t.Errorf("a flag takes the client secret: %s", line)
		}
	}
	if !strings.Contains(help.String(), "-apiops-client-id") || !strings.Contains(help.String(), "APIOPS_CLIENT_SECRET_FILE or APIOPS_CLIENT_SECRET") {
		t.Errorf("--help does not explain the client credentials:\n%s", help.String())
	}
	if code := Run(context.Background(), nil, envFrom(nil), io.Discard); code != 2 {
		t.Errorf("missing settings exit %d, want 2", code)
	}
}

func TestSettingsClientCredentials(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	_ = os.WriteFile(secretFile, []byte("from-file\n"), 0o600)
	for _, tc := range []struct {
		args     []string
		env      map[string]string
		tokenURL string
	}{
		{[]string{"--apiops-url", "https://apinizer.example.com"}, nil, "https://apinizer.example.com/apiops/auth/token"},
		{[]string{"--apiops-url", "https://apinizer.example.com/"}, nil, "https://apinizer.example.com/apiops/auth/token"},
		{[]string{"--apiops-url", "https://gw.example.com/apinizer/?x=1"}, nil, "https://gw.example.com/apinizer/apiops/auth/token"},
		{[]string{"--apiops-url", "https://a.example.com", "--apiops-token-url", "https://sso.example.com/token"}, nil, "https://sso.example.com/token"},
		{nil, map[string]string{"APIOPS_URL": "http://apiops:8080/base", "APIOPS_TOKEN_URL": "http://auth/token"}, "http://auth/token"},
	} {
		env := map[string]string{"APIOPS_CLIENT_ID": "api-user", "APIOPS_CLIENT_SECRET_FILE": secretFile}
		for k, v := range tc.env {
			env[k] = v
		}
		s, err := parseSettings(tc.args, envFrom(env), io.Discard)
		if err != nil {
			t.Errorf("%v %v: %v", tc.args, tc.env, err)
			continue
		}
		if s.apiopsClientID != "api-user" || s.apiopsClientSecretFile != secretFile || s.apiopsTokenURL != tc.tokenURL {
			t.Errorf("%v %v: client id %q, secret file %q, token URL %q, want token URL %q", tc.args, tc.env, s.apiopsClientID, s.apiopsClientSecretFile, s.apiopsTokenURL, tc.tokenURL)
		}
	}
	s, err := parseSettings([]string{"--apiops-url", "http://x", "--apiops-client-id", "u"}, envFrom(map[string]string{"APIOPS_CLIENT_SECRET": "from-env"}), io.Discard)
	if err != nil || s.apiopsClientSecret != "from-env" || s.apiopsTokenURL != "http://x/apiops/auth/token" {
		t.Errorf("settings %+v, %v", s, err)
	}
}

// The token source that run builds for --apiops-client-id fetches its tokens from the
// token URL, with the secret from the file.
func TestClientCredentialsTokenSourceFromSettings(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	_ = os.WriteFile(secretFile, []byte("pw\n"), 0o600)
	var got url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		got = r.PostForm
		if r.URL.Path != "/base/apiops/auth/token" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"tok","expires_in":3600}`)
	}))
	defer srv.Close()
	s, err := parseSettings([]string{"--apiops-url", srv.URL + "/base", "--apiops-client-id", "api-user"},
		envFrom(map[string]string{"APIOPS_CLIENT_SECRET_FILE": secretFile}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := clientCredentials(s, []apiops.Option{apiops.WithTimeout(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if token, err := cc.Token(context.Background()); err != nil || token != "tok" {
		t.Fatalf("Token = %q, %v", token, err)
	}
	if got.Get("client_id") != "api-user" || got.Get("client_secret") != "pw" {
		t.Errorf("form %v", got)
	}
}

// The program, given client credentials, fetches a token from the token endpoint and
// sends it to APIOps; it logs the client id and token URL, never the secret.
func TestClientCredentialsRun(t *testing.T) {
	const secret = "s3cret-Pa55-w0rd"
	_, apiURL, token := workertest.Simulator(t, "../../../testdata/apiops-seed.json")
	target, _ := url.Parse(apiURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var tokenRequests atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apiops/auth/token" {
			proxy.ServeHTTP(w, r) // to the simulator, which accepts only its token
			return
		}
		tokenRequests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.PostFormValue("grant_type") != "client_credentials" || r.PostFormValue("client_id") != "api-user" || r.PostFormValue("client_secret") != secret {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"unauthorized_client","error_description":"Bad credentials"}`)
			return
		}
		_, _ = fmt.Fprintf(w, `{"access_token":%q,"expires_in":3600}`, token)
	}))
	defer front.Close()
	secretFile := filepath.Join(t.TempDir(), "client-secret")
	_ = os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)

	logs := newWatchedLog()
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() {
		exit <- Run(ctx, []string{"--apiops-url", front.URL, "--apiops-client-id", "api-user", "--listen", "127.0.0.1:-1",
			"--http-addr", "", "--data-dir", t.TempDir()}, envFrom(map[string]string{"APIOPS_CLIENT_SECRET_FILE": secretFile}), logs)
	}()
	defer func() {
		cancel()
		if code := <-exit; code != 0 {
			t.Errorf("exit %d", code)
		}
	}()
	logs.waitFor(t, `"msg":"worker started"`, 60*time.Second)
	var natsURL string
	for line := range strings.Lines(logs.String()) {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil {
			if u, ok := l["url"].(string); ok && strings.HasPrefix(u, "nats://") {
				natsURL = u
			}
		}
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inbox := messages.ReplyInbox("MyProject") + nuid.Next()
	replies, _ := nc.SubscribeSync(inbox)
	if _, err := nc.Request("apiops.cmd.MyProject.credential.truststore.set",
		[]byte(`{"id":"cc-1","replyTo":"`+inbox+`","params":{"username":"api-user","keystoreName":"trust-2026"}}`), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	reply, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res messages.Result
	if err := json.Unmarshal(reply.Data, &res); err != nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("result %s (%v)", reply.Data, err)
	}
	if n := tokenRequests.Load(); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
	out := logs.String()
	if !strings.Contains(out, `"client_id":"api-user"`) || !strings.Contains(out, `"token_url":"`+front.URL+`/apiops/auth/token"`) {
		t.Errorf("no log line names the client id and token URL:\n%s", out)
	}
	if strings.Contains(out, secret) || strings.Contains(out, token) {
		t.Errorf("the log holds the secret or the token:\n%s", out)
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
	inbox := messages.ReplyInbox("MyProject") + nuid.Next()
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
		`apiops_worker_command_errors_total{code="http_4xx",type="credential.truststore.set"}`:               1, // the demo answers as today's APIOps: no code
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

func TestVersionFlag(t *testing.T) {
	if _, err := parseSettings([]string{"--version"}, envFrom(nil), io.Discard); !errors.Is(err, errShowVersion) {
		t.Errorf("--version: %v", err)
	}
}
