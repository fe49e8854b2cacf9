package worker_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// TestReplacesTheSharedConsumer: the consumer every instance of an earlier version
// shares is left as it is while such an instance runs, busy with commands it keeps
// alive; this instance takes commands from it alongside, and nothing runs twice. Once
// the earlier instance is gone, the shared consumer is deleted, once what was out on it
// came back, and every project gets a consumer of its own: the commands the earlier
// instance left run.
func TestReplacesTheSharedConsumer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	clock := &shiftedClock{}
	e.cfg.Clock = clock
	var olderRuns atomic.Bool
	olderRuns.Store(true)
	e.cfg.OlderInstances = func(context.Context) ([]string, error) {
		if olderRuns.Load() {
			return []string{"older-1 (version 0.1.0)"}, nil
		}
		return nil, nil
	}
	// The streams as any version creates them, and the consumer as a version before
	// the lease did.
	setup, err := worker.New(e.nc, nil, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := setup.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	old, err := e.js.CreateOrUpdateConsumer(ctx, worker.DefaultCommandStream, jetstream.ConsumerConfig{
		Durable: worker.DefaultConsumer, Description: "apiops-worker instances share this consumer", FilterSubject: "apiops.cmd.>",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 10000,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The older instance: it takes commands and keeps them, alive, as a busy one does.
	var olderHeld []jetstream.Msg
	var olderMu sync.Mutex
	olderCtx, stopOlder := context.WithCancel(ctx)
	olderDone := make(chan struct{})
	go func() {
		defer close(olderDone)
		for olderCtx.Err() == nil {
			if batch, err := old.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond)); err == nil {
				for m := range batch.Messages() {
					olderMu.Lock()
					olderHeld = append(olderHeld, m)
					olderMu.Unlock()
				}
			}
			olderMu.Lock()
			for _, m := range olderHeld {
				_ = m.InProgress()
			}
			olderMu.Unlock()
		}
	}()

	e.start(nil)
	for i := range 8 {
		e.publishLine(fmt.Appendf(nil, `{"id":"adopt-%d","type":"credential.truststore.set","project":"MyProject","params":{"username":"api-user","keystoreName":"trust-2026"}}`, i))
	}
	eventually(t, 10*time.Second, "the warning about earlier instances", func() bool {
		return strings.Contains(e.logs.String(), "instances of an earlier apiops-worker version still run")
	})
	eventually(t, 20*time.Second, "every command taken by one of the two", func() bool {
		olderMu.Lock()
		defer olderMu.Unlock()
		return len(olderHeld) > 0 && e.pending() == uint64(len(olderHeld))
	})
	info, err := old.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.AckWait != 30*time.Second || info.Config.Metadata["apiops-worker.fleet"] != "" {
		t.Errorf("the consumer was changed under an earlier instance: %+v", info.Config)
	}

	// The older instance is stopped; the next look finds it gone, and once its
	// commands' AckWait is past they run here.
	stopOlder()
	<-olderDone
	olderRuns.Store(false)
	clock.shift(time.Minute)
	eventually(t, 10*time.Second, "the shared consumer on its way out", func() bool {
		return strings.Contains(e.logs.String(), "no earlier instance runs any more")
	})
	clock.shift(time.Minute)
	results := e.awaitResults(8, 40*time.Second)
	if len(results) != 8 {
		t.Fatalf("%d results", len(results))
	}
	if n := e.apiopsRequests(); n != 8 {
		t.Errorf("%d APIOps requests for 8 commands", n)
	}
	if _, err := e.js.Consumer(ctx, worker.DefaultCommandStream, worker.DefaultConsumer); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the shared consumer is still there: %v", err)
	}
	consumer, err := e.js.Consumer(ctx, worker.DefaultCommandStream, worker.ProjectConsumer(worker.DefaultConsumer, "MyProject"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg := consumer.CachedInfo().Config; cfg.AckWait != e.cfg.AckWait || cfg.Metadata["apiops-worker.project"] != "MyProject" {
		t.Errorf("the project's consumer: AckWait %v, metadata %v", cfg.AckWait, cfg.Metadata)
	}
}

// projectConsumer makes project's consumer as the worker would, for a test to play
// a previous active instance that pulled from it.
func (e *env) projectConsumer(project string) jetstream.Consumer {
	e.t.Helper()
	c, err := e.js.CreateOrUpdateConsumer(context.Background(), worker.DefaultCommandStream, jetstream.ConsumerConfig{
		Durable: worker.ProjectConsumer(worker.DefaultConsumer, project), FilterSubjects: []string{"apiops.cmd." + project + ".>"},
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: e.cfg.AckWait, MaxDeliver: -1, MaxAckPending: 1000,
		Metadata: map[string]string{"apiops-worker.fleet": "lease", "apiops-worker.project": project},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// TestTakeoverWithMoreOutThanRoom: the previous instance held more commands than this
// one has room for (a lower --concurrency after a configuration change); this one
// still takes them all back and runs them.
func TestTakeoverWithMoreOutThanRoom(t *testing.T) {
	t.Parallel() // waits on leases and NATS: CPU is idle meanwhile
	e := newEnv(t)
	e.cfg.Concurrency = 2 // room for 4
	e.cfg.LeaseTimeout = 2 * time.Second
	setup, _ := worker.New(e.nc, nil, e.cfg)
	if err := setup.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	consumer := e.projectConsumer("MyProject")
	for i := range 10 {
		e.publishLine(fmt.Appendf(nil, `{"id":"room-%d","type":"credential.truststore.set","project":"MyProject","params":{"username":"user-%d","keystoreName":"x"}}`, i, i))
	}
	// A previous instance took all ten, and died.
	batch, err := consumer.Fetch(10, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
	}
	e.start(nil)
	if got := e.awaitResults(10, 30*time.Second); len(got) != 10 {
		t.Errorf("%d of 10 results", len(got))
	}
}

// TestShutdownWhileTakingOver: SIGTERM while new commands are parked behind the
// barrier hands them back and releases the lease, without waiting out anything.
func TestShutdownWhileTakingOver(t *testing.T) {
	t.Parallel() // waits on leases and NATS: CPU is idle meanwhile
	e := newEnv(t)
	e.cfg.LeaseTimeout = 2 * time.Second
	setup, _ := worker.New(e.nc, nil, e.cfg)
	if err := setup.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	consumer := e.projectConsumer("MyProject")
	e.publishLine([]byte(`{"id":"kept","type":"credential.truststore.set","project":"MyProject","params":{"username":"user-0","keystoreName":"x"}}`))
	batch, err := consumer.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var kept jetstream.Msg
	for m := range batch.Messages() {
		kept = m
	}
	stopKeeping := make(chan struct{})
	defer close(stopKeeping)
	go func() { // a previous instance that still keeps its command alive
		for {
			select {
			case <-stopKeeping:
				return
			case <-time.After(500 * time.Millisecond):
				_ = kept.InProgress()
			}
		}
	}()
	w := e.start(nil)
	eventually(t, 30*time.Second, "the barrier up", func() bool { return strings.Contains(e.logs.String(), "new commands wait until") })
	e.publishLine([]byte(`{"id":"parked","type":"credential.truststore.set","project":"MyProject","params":{"username":"user-1","keystoreName":"x"}}`))
	eventually(t, 10*time.Second, "the new command delivered", func() bool {
		info, _ := consumer.Info(context.Background())
		return info != nil && info.NumAckPending == 2
	})
	stopped := make(chan struct{})
	go func() { e.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(e.cfg.ShutdownTimeout + 10*time.Second):
		t.Fatal("shutdown hung with a command parked")
	}
	if w.Active() {
		t.Error("still active after shutdown")
	}
	if !strings.Contains(e.logs.String(), `"msg":"handed commands back to the stream, in order","commands":1`) {
		t.Errorf("the parked command was not handed back:\n%s", e.logs.String())
	}
}

// TestLostLeaseDropsHeldCommands: an active instance whose lease another instance
// took starts no request for the commands it holds and leaves them unacknowledged; the
// next active instance runs them.
func TestLostLeaseDropsHeldCommands(t *testing.T) {
	e := newEnv(t)
	e.cfg.LeaseTimeout = 2 * time.Second
	var failing atomic.Bool
	failing.Store(true)
	e.mu.Lock()
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		if failing.Load() { // APIOps down: the commands wait, paused
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	e.mu.Unlock()
	first := e.start(nil)
	for _, user := range []string{"api-user", "partner-a"} {
		e.publishLine([]byte(`{"id":"held-` + user + `","type":"credential.truststore.set","project":"MyProject","params":{"username":"` + user + `","keystoreName":"trust-2026"}}`))
	}
	eventually(t, 10*time.Second, "the worker paused", func() bool { return first.Paused() == worker.Outage })

	// Another instance takes the lease over.
	kv, _ := e.js.KeyValue(context.Background(), worker.DefaultIdempotencyBucket)
	key := "lease." + base64.RawURLEncoding.EncodeToString([]byte(worker.DefaultConsumer))
	if _, err := kv.Put(context.Background(), key, []byte(`{"holder":"thief"}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the first instance a standby", func() bool { return !first.Active() })
	failing.Store(false)
	before := e.apiopsRequests()
	// The thief never renews: a new instance takes over, waits the held commands out
	// and runs them.
	client, _ := apiops.New(e.apiURL, apiops.StaticToken("sim-token"))
	second, _ := worker.New(e.nc, client, e.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- second.Run(ctx) }()
	stopSecond := sync.OnceFunc(func() { cancel(); <-stopped })
	defer stopSecond()
	results := e.awaitResults(2, 30*time.Second)
	for id, r := range results {
		if r.Status != messages.StatusSucceeded {
			t.Errorf("%s: %s", id, r.raw)
		}
	}
	if after := e.apiopsRequests() - before; after != 2 {
		t.Errorf("%d requests after the lease moved, want 2 (from the new instance only)", after)
	}
	if first.Active() || !second.Active() {
		t.Errorf("active: first %v, second %v", first.Active(), second.Active())
	}

	// The first instance lost its lease while paused; when it is active again it must
	// not stay paused with nothing left to probe.
	stopSecond()
	eventually(t, 10*time.Second, "the first instance active again", first.Active)
	cmd := e.publishLine([]byte(`{"id":"after-regain","type":"credential.truststore.set","project":"MyProject","params":{"username":"api-user","keystoreName":"trust-2025"}}`))
	if r := e.awaitResults(1, 20*time.Second)[cmd.ID]; r == nil || r.Status != messages.StatusSucceeded {
		t.Errorf("after regaining the lease: %+v", r)
	}
}

// TestStartsWhileTheClusterIsDown: with two of three nodes down there is no meta
// leader; the worker does not give up, is not ready and says why, logs each new
// problem once, and comes up with R3 streams once the nodes are back.
func TestStartsWhileTheClusterIsDown(t *testing.T) {
	t.Parallel() // waits on leases and NATS: CPU is idle meanwhile
	cluster := natstest.StartCluster(t, 3, nil)
	cluster.Stop(0)
	cluster.Stop(1)
	nc, err := nats.Connect(cluster.URLs(), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	e := newEnv(t) // for the simulator and the logs; its own server stays unused
	e.cfg.Replicas = 3
	e.cfg.RetryInitial, e.cfg.RetryMax = 100*time.Millisecond, 500*time.Millisecond
	client, _ := apiops.New(e.apiURL, apiops.StaticToken("sim-token"))
	w, err := worker.New(nc, client, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(ctx) }()
	defer func() { cancel(); <-stopped }()
	eventually(t, 30*time.Second, "a set-up problem reported", func() bool {
		err := w.Ready()
		return err != nil && strings.Contains(err.Error(), "setting up")
	})
	retriedFor := time.Now()
	eventually(t, 10*time.Second, "a few retries", func() bool { return time.Since(retriedFor) > 2*time.Second })
	if n := strings.Count(e.logs.String(), "cannot set up the streams"); n > 3 {
		t.Errorf("%d log lines for set-up retries; one per new problem is enough:\n%s", n, e.logs.String())
	}

	cluster.Start(0)
	cluster.Start(1)
	eventually(t, 60*time.Second, "the worker ready and active", func() bool { return w.Ready() == nil && w.Active() })
	js, _ := jetstream.New(nc)
	for _, name := range []string{worker.DefaultCommandStream, worker.DefaultResultStream, worker.DefaultDeadStream, "KV_" + worker.DefaultIdempotencyBucket} {
		s, err := js.Stream(context.Background(), name)
		if err != nil || s.CachedInfo().Config.Replicas != 3 {
			t.Errorf("stream %s: %v", name, err)
		}
	}
	results, _ := nc.SubscribeSync("apiops.result.>")
	if _, err := js.Publish(context.Background(), "apiops.cmd.MyProject.credential.truststore.set",
		[]byte(`{"id":"after-start","params":{"username":"api-user","keystoreName":"trust-2026"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := results.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("no result: %v", err)
	}
	c, err := js.Consumer(context.Background(), worker.DefaultCommandStream, worker.ProjectConsumer(worker.DefaultConsumer, "MyProject"))
	if err != nil || c.CachedInfo().Config.Replicas != 3 {
		t.Errorf("the project's consumer: %v", err)
	}
}

// TestCommandDeliveredElsewhereWaits: a command the consumer delivers to another
// instance during the active one's term (a frozen predecessor's pull, sent as it
// thawed) is out of the active instance's hands; a later command for its resource
// waits until it is back, and then runs after it.
func TestCommandDeliveredElsewhereWaits(t *testing.T) {
	e := newEnv(t)
	e.cfg.Concurrency = 1 // holds four: all busy, it pulls no more
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // a failure must not leave requests hanging at shutdown
	var mu sync.Mutex
	var order []string
	e.mu.Lock()
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		user := strings.Split(r.URL.Path, "/")[5]
		mu.Lock()
		order = append(order, user)
		mu.Unlock()
		if strings.HasPrefix(user, "busy-") {
			<-release
		}
		return false
	}
	e.mu.Unlock()
	e.start(nil)
	for _, user := range []string{"busy-1", "busy-2", "busy-3", "busy-4"} {
		e.publishLine([]byte(`{"id":"` + user + `","type":"credential.truststore.set","project":"MyProject","params":{"username":"` + user + `","keystoreName":"x"}}`))
	}
	// No pull of the worker's may be waiting either: one made while the project's
	// consumer was behind its first barrier (room lifted) may still be open.
	eventually(t, 10*time.Second, "the four commands held, one at APIOps, no pull waiting", func() bool {
		mu.Lock()
		atAPIOps := len(order)
		mu.Unlock()
		info, _ := e.projectConsumer("MyProject").Info(context.Background())
		return atAPIOps == 1 && info != nil && info.NumAckPending == 4 && info.NumWaiting == 0
	})

	// The worker's room is full: the next command goes to another instance's pull.
	e.publishLine([]byte(`{"id":"earlier","type":"credential.truststore.set","project":"MyProject","params":{"username":"svc","keystoreName":"first"}}`))
	batch, err := e.projectConsumer("MyProject").Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var elsewhere jetstream.Msg
	for m := range batch.Messages() {
		elsewhere = m
	}
	if elsewhere == nil {
		t.Fatal("the other instance's pull got nothing")
	}
	e.publishLine([]byte(`{"id":"later","type":"credential.truststore.set","project":"MyProject","params":{"username":"svc","keystoreName":"second"}}`))
	releaseAll()
	eventually(t, 10*time.Second, "the later command parked, or run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(e.logs.String(), "delivered commands to another instance") || slices.Contains(order, "svc")
	})
	if err := elsewhere.Nak(); err != nil { // the other instance hands it back
		t.Fatal(err)
	}
	e.awaitResults(6, 20*time.Second)
	var keystores []string
	for _, r := range e.sim.Requests() {
		if strings.Contains(r.Path, "/credentials/svc/") {
			keystores = append(keystores, path.Base(r.Path))
		}
	}
	if !slices.Equal(keystores, []string{"first", "second"}) {
		t.Errorf("svc's truststore was set to %q, want first, then second", keystores)
	}
}
