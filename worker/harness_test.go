package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// env is a real NATS server, the APIOps simulator over HTTP and a worker between them.
type env struct {
	t      *testing.T
	nats   *natstest.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	sim    *simulator.Server
	apiURL string
	cfg    worker.Config
	logs   *syncBuffer

	results chan *nats.Msg // every result published, as core NATS sees it

	mu sync.Mutex
	// front, when set, sees each APIOps request first and answers it when it returns
	// true: faults for some commands only.
	front   func(w http.ResponseWriter, r *http.Request) bool
	cancel  context.CancelFunc
	stopped chan error
}

// syncBuffer collects the worker's logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	seed, err := simulator.LoadSeed("../testdata/apiops-seed.json")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, sim: simulator.New(seed), logs: &syncBuffer{}, results: make(chan *nats.Msg, 10000)}
	e.nats = natstest.Start(t)
	e.nc = e.nats.Connect(t)
	e.js, _ = jetstream.New(e.nc)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		front := e.front
		e.mu.Unlock()
		if front != nil && front(w, r) {
			return
		}
		e.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.apiURL = srv.URL
	e.cfg = worker.Config{
		ManageStreams:   true,
		Concurrency:     8,
		MaxAttempts:     5,
		RetryInitial:    10 * time.Millisecond,
		RetryMax:        100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
		AckWait:         3 * time.Second,
		Logger: zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
			zapcore.AddSync(e.logs), zapcore.DebugLevel)),
	}
	sub, err := e.nc.ChanSubscribe("apiops.result.>", e.results)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return e
}

// start runs a worker with e.cfg against APIOps with the given token source.
func (e *env) start(tokens apiops.TokenSource) *worker.Worker {
	e.t.Helper()
	if tokens == nil {
		tokens = apiops.StaticToken("sim-token")
	}
	client, err := apiops.New(e.apiURL, tokens, apiops.WithTimeout(5*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	w, err := worker.New(e.nc, client, e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := w.Setup(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.stopped = make(chan error, 1)
	go func() { e.stopped <- w.Run(ctx) }()
	e.t.Cleanup(func() { e.stop() })
	return w
}

// stop shuts the worker down and waits for Run to return.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.stopped:
		if err != nil {
			e.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		e.t.Fatal("worker did not stop")
	}
}

// publish sends a raw command on its subject with Nats-Msg-Id set to id (when not "").
func (e *env) publish(project, typ, id string, body []byte) {
	e.t.Helper()
	msg := &nats.Msg{Subject: "apiops.cmd." + project + "." + typ, Data: body, Header: nats.Header{}}
	if id != "" {
		msg.Header.Set(messages.HeaderMsgID, id)
	}
	if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
		e.t.Fatal(err)
	}
}

// publishLine sends a command that names its type and project, with Nats-Msg-Id
// <project>/<id>, as the contract asks.
func (e *env) publishLine(line []byte) *messages.Command {
	e.t.Helper()
	cmd, err := messages.DecodeLine(line)
	if err != nil {
		e.t.Fatal(err)
	}
	e.publish(cmd.Project, cmd.Type, messages.MsgID(cmd.Project, cmd.ID), line)
	return cmd
}

// withField returns a command line with one envelope field set.
func withField(t *testing.T, line []byte, field string, value any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	m[field] = value
	out, _ := json.Marshal(m)
	return out
}

// awaitResults waits for n results and returns them by id (or by arrival order for
// results without id, keyed "#<n>").
func (e *env) awaitResults(n int, timeout time.Duration) map[string]*result {
	e.t.Helper()
	out := make(map[string]*result)
	deadline := time.After(timeout)
	for i := 0; i < n; i++ {
		select {
		case msg := <-e.results:
			r := decodeResult(e.t, msg)
			key := r.ID
			if key == "" {
				key = fmt.Sprintf("#%d", i)
			}
			if _, dup := out[key]; dup {
				e.t.Errorf("second result for %s", key)
			}
			out[key] = r
		case <-deadline:
			e.t.Fatalf("%d of %d results after %v; logs:\n%s", len(out), n, timeout, e.logs.String())
		}
	}
	return out
}

type result struct {
	messages.Result
	header nats.Header
	raw    []byte
}

func decodeResult(t *testing.T, msg *nats.Msg) *result {
	t.Helper()
	r := &result{header: msg.Header, raw: msg.Data}
	if err := json.Unmarshal(msg.Data, &r.Result); err != nil {
		t.Fatalf("result %s: %v", msg.Data, err)
	}
	return r
}

// nextReply is the next result on replies, within 10 s.
func nextReply(t *testing.T, replies *nats.Subscription) *result {
	t.Helper()
	msg, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return decodeResult(t, msg)
}

// streamMsgs reads every message stored in a stream.
func (e *env) streamMsgs(stream string) []jetstream.Msg {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	n := int(info.State.Msgs)
	if n == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		e.t.Fatal(err)
	}
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	if len(out) != n {
		e.t.Fatalf("read %d of %d messages from %s", len(out), n, stream)
	}
	return out
}

// deadLetters reads the dead letters once every command is acknowledged. A command's
// dead letter is stored before its ack, but its result, published together with the
// dead letter, may be seen first.
func (e *env) deadLetters() []jetstream.Msg {
	e.t.Helper()
	eventually(e.t, 10*time.Second, "every command acknowledged", func() bool { return e.pending() == 0 })
	return e.streamMsgs(worker.DefaultDeadStream)
}

// pending is how many commands wait in the command stream.
func (e *env) pending() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), worker.DefaultCommandStream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

// eventually polls cond until it holds: for state that no event announces (a stream's
// count after an asynchronous ack).
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readExample(t *testing.T, typ string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../testdata/commands", typ+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(data)
}

// apiopsRequests counts the requests the simulator saw.
func (e *env) apiopsRequests() int { return len(e.sim.Requests()) }

// failFor makes APIOps answer status to every request whose path contains part.
func (e *env) failFor(part string, status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.EscapedPath(), part) {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error":"server_error","error_description":"simulated failure"}`))
		return true
	}
}

func natsMsg(m jetstream.Msg) *nats.Msg {
	return &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
}
