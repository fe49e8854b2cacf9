package worker_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/internal/natstest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// TestAdoptsTodaysConsumer: a consumer set up by a version without the lease, which an
// older instance still pulls from, is left as it is until that instance is gone; then
// it gets this version's marker and AckWait, and commands run.
func TestAdoptsTodaysConsumer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// The streams as any version creates them, and the consumer as the last one did.
	setup, err := worker.New(e.nc, nil, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := setup.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.js.DeleteConsumer(ctx, worker.DefaultCommandStream, worker.DefaultConsumer); err != nil {
		t.Fatal(err)
	}
	old, err := e.js.CreateOrUpdateConsumer(ctx, worker.DefaultCommandStream, jetstream.ConsumerConfig{
		Durable: worker.DefaultConsumer, Description: "apiops-worker instances share this consumer", FilterSubject: "apiops.cmd.>",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 10000,
	})
	if err != nil {
		t.Fatal(err)
	}
	// An older instance: it pulls, and would take whatever came.
	var olderGot atomic.Int32
	olderCtx, stopOlder := context.WithCancel(ctx)
	olderDone := make(chan struct{})
	go func() {
		defer close(olderDone)
		for olderCtx.Err() == nil {
			batch, err := old.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond))
			if err != nil {
				continue
			}
			for range batch.Messages() {
				olderGot.Add(1)
			}
		}
	}()

	w := e.start(nil)
	eventually(t, 10*time.Second, "the warning about older instances", func() bool {
		return strings.Contains(e.logs.String(), "older apiops-worker instances, which do not use the lease, still pull")
	})
	if err := w.Ready(); err != nil {
		t.Errorf("not ready while waiting for older instances: %v", err)
	}
	info, err := old.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.AckWait != 30*time.Second || info.Config.Metadata["apiops-worker.fleet"] != "" {
		t.Errorf("the consumer was changed under an older instance: %+v", info.Config)
	}

	stopOlder()
	<-olderDone
	cmd := e.publishLine(readExample(t, "credential.truststore.set"))
	if r := e.awaitResults(1, 20*time.Second)[cmd.ID]; r == nil || r.Status != messages.StatusSucceeded {
		t.Fatalf("result %+v", r)
	}
	if n := olderGot.Load(); n != 0 {
		t.Errorf("the older instance got %d commands", n)
	}
	consumer, err := e.js.Consumer(ctx, worker.DefaultCommandStream, worker.DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := consumer.CachedInfo().Config; cfg.AckWait != e.cfg.AckWait || cfg.Metadata["apiops-worker.fleet"] == "" {
		t.Errorf("the consumer was not adopted: AckWait %v, metadata %v", cfg.AckWait, cfg.Metadata)
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
	c, err := js.Consumer(context.Background(), worker.DefaultCommandStream, worker.DefaultConsumer)
	if err != nil || c.CachedInfo().Config.Replicas != 3 {
		t.Errorf("consumer: %v", err)
	}
	results, _ := nc.SubscribeSync("apiops.result.>")
	if _, err := js.Publish(context.Background(), "apiops.cmd.MyProject.credential.truststore.set",
		[]byte(`{"id":"after-start","params":{"username":"api-user","keystoreName":"trust-2026"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := results.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("no result: %v", err)
	}
}
