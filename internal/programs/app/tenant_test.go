package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
	"github.com/apiops-worker/apiops-worker/messages"
)

// The rows of the hostile-tenant table that the accounts alone do not close: each
// plays team-a (or a careless operator) with the shipped configuration and checks what
// MyProject, the worker, and every copy of a secret come to. See
// docs/design/project-isolation.md.

// apiFront is APIOps as the worker sees it: the simulator, unless a rule answers first.
type apiFront struct {
	url   string
	mu    sync.Mutex
	rule  func(w http.ResponseWriter, r *http.Request, body []byte) bool
	proxy *httputil.ReverseProxy
}

func newAPIFront(t *testing.T, simURL string) *apiFront {
	target, err := url.Parse(simURL)
	if err != nil {
		t.Fatal(err)
	}
	f := &apiFront{proxy: httputil.NewSingleHostReverseProxy(target)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *apiFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	f.mu.Lock()
	rule := f.rule
	f.mu.Unlock()
	if rule != nil && rule(w, r, body) {
		return
	}
	f.proxy.ServeHTTP(w, r)
}

func (f *apiFront) set(rule func(w http.ResponseWriter, r *http.Request, body []byte) bool) {
	f.mu.Lock()
	f.rule = rule
	f.mu.Unlock()
}

// attackLongSubject: a subject of about 4,000 characters once made the worker's own
// result subject longer than the server's control line, and the server closed the
// worker's connection. team-a cannot send it (attackSubjects); an operator can. The
// worker answers on a subject built from the project and "unknown", and stays.
func attackLongSubject(t *testing.T, iso *isolation) {
	long := "apiops.cmd.TeamA.credential.truststore.set."
	long += strings.Repeat("x", 4000-len(long))
	results, _ := iso.admin.SubscribeSync("apiops.result.TeamA.unknown")
	if err := iso.admin.Publish(long, []byte(`{"id":"long-op","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`)); err != nil {
		t.Fatal(err)
	}
	msg, err := results.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no rejection on apiops.result.TeamA.unknown: %v", err)
	}
	var r messages.Result
	if json.Unmarshal(msg.Data, &r) != nil || r.Status != messages.StatusRejected || r.Error.Code != messages.CodeUnknownType {
		t.Errorf("the long subject's result: %s", msg.Data)
	}
	iso.myProjectWithin(t, "after-row-1", 5*time.Second)
}

// attackLargeCommands: 32 invalid commands just under the command stream's size limit
// once made dead letters larger than the server takes, whose store retried for ever.
// Now each dead letter fits, and one command over the limit is refused at publish.
func attackLargeCommands(t *testing.T, iso *isolation) {
	js, _ := jetstream.New(iso.h.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dead := deadLetters(t, iso, "apiops.dlq.TeamA.credential.truststore.set")
	const limit = 512 << 10
	for i := range 32 {
		body := fmt.Appendf(nil, `{"id":"large-%d","params":{"username":"svc-orders","keystoreName":"team-a-trust","pad":"`, i)
		body = append(body, bytes.Repeat([]byte("p"), limit-len(body)-100)...)
		body = append(body, `"}}`...)
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: "apiops.cmd.TeamA.credential.truststore.set", Data: body}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishing the large commands")
	}
	over := append([]byte(`{"id":"over","params":{"pad":"`), bytes.Repeat([]byte("p"), limit)...)
	if _, err := js.Publish(ctx, "apiops.cmd.TeamA.credential.truststore.set", append(over, `"}}`...)); err == nil ||
		!strings.Contains(err.Error(), "maximum") {
		t.Errorf("a command over the size limit: %v", err)
	}
	iso.myProjectWithin(t, "after-row-2", 3*time.Second)
	for seen := map[string]bool{}; len(seen) < 32; {
		m, err := dead.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("%d of 32 dead letters: %v", len(seen), err)
		}
		if id := m.Headers().Get(messages.HeaderCommandID); strings.HasPrefix(id, "large-") {
			seen[id] = true
			_ = m.Ack()
		}
	}
}

// deadLetters reads the dead letters on subject from now on, as the operator.
func deadLetters(t *testing.T, iso *isolation, subject string) interface {
	NextMsg(time.Duration) (jetstream.Msg, error)
} {
	js, _ := jetstream.New(iso.admin)
	c, err := js.OrderedConsumer(context.Background(), "APIOPS_DEAD", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		t.Fatal(err)
	}
	it, err := c.Messages()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(it.Stop)
	return nextMsg{it}
}

type nextMsg struct{ jetstream.MessagesContext }

func (n nextMsg) NextMsg(d time.Duration) (jetstream.Msg, error) {
	got := make(chan jetstream.Msg, 1)
	errs := make(chan error, 1)
	go func() {
		m, err := n.Next()
		if err != nil {
			errs <- err
			return
		}
		got <- m
	}()
	select {
	case m := <-got:
		return m, nil
	case err := <-errs:
		return nil, err
	case <-time.After(d):
		n.Stop()
		return nil, fmt.Errorf("none within %v", d)
	}
}

// attackTenantRateLimit: APIOps rate-limits TeamA alone, with Retry-After 900. Once,
// that paused every project for as long. Now TeamA waits, and MyProject does not.
func attackTenantRateLimit(t *testing.T, iso *isolation) {
	iso.api.set(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if !strings.Contains(r.URL.Path, "/projects/TeamA/") {
			return false
		}
		w.Header().Set("Retry-After", "900")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":"rate_limit_exceeded","error_description":"Rate limit exceeded for TeamA","retry_after":900}`)
		return true
	})
	defer iso.api.set(nil)
	js, _ := jetstream.New(iso.h.nc)
	for i := range 16 {
		if _, err := js.Publish(context.Background(), "apiops.cmd.TeamA.keystore.delete",
			fmt.Appendf(nil, `{"id":"limited-%d","params":{"keystoreName":"team-a-store-%d"}}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	iso.logs.waitFor(t, `"project":"TeamA"`, 30*time.Second) // TeamA's pause, or its first retry
	for i := range 3 {
		iso.myProjectWithin(t, fmt.Sprintf("after-row-4-%d", i), 3*time.Second)
	}
}

// attackQuotedSecrets: an APIOps that quotes the request it refuses would have put the
// opened password and file of a sealed keystore into the result, the dead letter's
// headers, the record, the reply and the log. They reach none of these.
func attackQuotedSecrets(t *testing.T, iso *isolation) {
	password := "pw-quoted-" + nuid.Next()
	fileText := string(keystorestest.File(keystorestest.Spec{Password: password, TrustStore: true})) // the worker opens it
	file := base64.StdEncoding.EncodeToString([]byte(fileText))
	iso.api.set(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.Method != http.MethodPost || !strings.Contains(r.URL.Path, "/projects/TeamA/keystores/") {
			return false
		}
		w.WriteHeader(http.StatusBadRequest)
		quote, _ := json.Marshal("Invalid keystore " + string(body) + " (file starts " + file[:40] + ")")
		fmt.Fprintf(w, `{"status":"FAILURE","resultMessage":%s}`, quote)
		return true
	})
	defer iso.api.set(nil)
	sealing, err := client.New(iso.h.nc, client.WithInboxPrefix("_INBOX.TeamA"), client.WithDiscoveredSealKey())
	if err != nil {
		t.Fatal(err)
	}
	dead := deadLetters(t, iso, "apiops.dlq.TeamA.keystore.create")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := sealing.Request(ctx, &messages.Command{ID: "quoted-1", Project: "TeamA", Params: &messages.KeystoreCreate{
		Name: "team-a-quoted", KeyStoreEnvironmentList: []messages.KeyStoreEnvironment{{EnvironmentName: "production",
			File: messages.NewSecret(file), Password: messages.NewSecret(password), KeyStoreType: "PKCS12"}}}})
	if err != nil || res.Status != messages.StatusFailed || !strings.Contains(res.Error.Message, messages.Redacted) {
		t.Fatalf("the sealed command's result: %+v, %v", res, err)
	}
	reply, _ := json.Marshal(res)
	letter, err := dead.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(iso.admin)
	kv, _ := js.KeyValue(ctx, "APIOPS_IDEMPOTENCY")
	record, err := kv.Get(ctx, "result."+base64.RawURLEncoding.EncodeToString([]byte("TeamA"))+"."+base64.RawURLEncoding.EncodeToString([]byte("quoted-1")))
	if err != nil {
		t.Fatal(err)
	}
	for where, text := range map[string]string{
		"the reply": string(reply), "the dead letter": fmt.Sprint(letter.Headers()) + string(letter.Data()),
		"the record": string(record.Value()), "the log": iso.logs.String(),
	} {
		for _, secret := range []string{password, fileText, file[:16], base64.StdEncoding.EncodeToString([]byte(password))} {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds the secret %q", where, secret)
			}
		}
	}
}

// attackStorage: 300 dead-lettering commands of 1 MB once stored 300 MB for 30 days.
// A command over the size limit is refused now, and every stream and the bucket is
// bounded in bytes; each project's subjects are bounded in messages.
func attackStorage(t *testing.T, iso *isolation) {
	js, _ := jetstream.New(iso.h.nc)
	// Each refusal takes a 1 MB round trip: about 100 ms under -race on a busy machine.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	big := bytes.Repeat([]byte("x"), 1_000_000)
	const attempts = 50 // each refused alike: more only make the test slower
	refused := 0
	for range attempts {
		if _, err := js.Publish(ctx, "apiops.cmd.TeamA.credential.truststore.set", big); err != nil {
			refused++
		}
	}
	if refused != attempts {
		t.Errorf("%d of %d commands of 1 MB refused", refused, attempts)
	}
	admin, _ := jetstream.New(iso.admin)
	for _, name := range []string{"APIOPS_COMMANDS", "APIOPS_RESULTS", "APIOPS_DEAD", "KV_APIOPS_IDEMPOTENCY"} {
		s, err := admin.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		if cfg.MaxBytes <= 0 || name != "KV_APIOPS_IDEMPOTENCY" && cfg.MaxMsgsPerSubject <= 0 {
			t.Errorf("%s is not bounded: max bytes %d, per subject %d", name, cfg.MaxBytes, cfg.MaxMsgsPerSubject)
		}
	}
	iso.myProjectWithin(t, "after-row-8", 3*time.Second)
}

// attackBacklog: 5,000 small valid commands of team-a's once kept a MyProject command
// published right after waiting 2.4 s. Now each project has a consumer and a share of
// its own: MyProject's command finishes within a second.
func attackBacklog(t *testing.T, iso *isolation) {
	js, _ := jetstream.New(iso.h.nc, jetstream.WithPublishAsyncMaxPending(5000))
	for i := range 5000 {
		if _, err := js.PublishAsync("apiops.cmd.TeamA.credential.truststore.set",
			fmt.Appendf(nil, `{"id":"backlog-%d","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("publishing the backlog")
	}
	iso.myProjectWithin(t, "after-row-9", time.Second)
	// The rest of the backlog is team-a's to wait for; later rows need not.
	admin, _ := jetstream.New(iso.admin)
	stream, _ := admin.Stream(context.Background(), "APIOPS_COMMANDS")
	if err := stream.Purge(context.Background(), jetstream.WithPurgeSubject("apiops.cmd.TeamA.>")); err != nil {
		t.Fatal(err)
	}
}

// attackHeaders: headers a team forges (a replay mark, a trace context, headers of its
// own) were copied into dead letters. Now only a well-formed replay mark goes along,
// and the trace context is the worker's reading of it.
func attackHeaders(t *testing.T, iso *isolation) {
	dead := deadLetters(t, iso, "apiops.dlq.TeamA.keystore.delete")
	msg := nats.NewMsg("apiops.cmd.TeamA.keystore.delete")
	msg.Data = []byte(`{"id":"forged-1","params":{}}`) // invalid: a dead letter
	msg.Header.Set(messages.HeaderReplayOf, "forged <script>")
	msg.Header.Set("X-Hostile", "copied?")
	msg.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	msg.Header.Set("tracestate", strings.Repeat("x", 4000))
	js, _ := jetstream.New(iso.h.nc)
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	letter, err := dead.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h := letter.Headers()
	if h.Get("X-Hostile") != "" || h.Get(messages.HeaderReplayOf) != "" {
		t.Errorf("forged headers copied into the dead letter: %v", h)
	}
	if tp := h.Get("traceparent"); tp != "" && !regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$`).MatchString(tp) {
		t.Errorf("traceparent %q", tp)
	}
	if len(h.Get("tracestate")) > 512 {
		t.Errorf("a tracestate of %d bytes copied", len(h.Get("tracestate")))
	}
}

// TestClosedConnectionEndsTheProcess: a connection the server closes for good (here
// for "Maximum Control Line Exceeded": a server whose limit is lower than the subjects
// of a valid project's records and results) ends the program with an error, so that
// its orchestrator starts it afresh, instead of leaving it half alive.
func TestClosedConnectionEndsTheProcess(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		MaxControlLine: 512}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	logs := newWatchedLog()
	exit := make(chan int, 1)
	go func() {
		exit <- Run(context.Background(), []string{"--nats-url", srv.ClientURL(), "--demo", "--demo-seed", "../../../testdata/apiops-seed.json",
			"--http-addr", "127.0.0.1:0", "--shutdown-timeout", "1s"}, envFrom(nil), logs)
	}()
	logs.waitFor(t, `"msg":"worker started"`, 30*time.Second)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	project := strings.Repeat("é", 200) // a valid name of 400 bytes
	if err := nc.Publish("apiops.cmd."+project+".credential.truststore.set", []byte(`{"id":"long-project","params":{"username":"u","keystoreName":"k"}}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code == 0 || !strings.Contains(logs.String(), "the NATS connection was closed") {
			t.Errorf("exit %d; log:\n%s", code, logs.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the program still runs with its connection closed; log:\n%s", logs.String())
	}
}
