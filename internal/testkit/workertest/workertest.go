// Package workertest runs a real worker between an embedded NATS server and the APIOps
// simulator, for the tests of the packages that publish to it.
package workertest

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/worker"
)

// Env is a running worker's surroundings.
type Env struct {
	NATS *natstest.Server
	Sim  *simulator.Server
}

// Start starts NATS, the simulator with the seed at seedPath and a worker between them
// (which creates its streams), all stopped when the test ends. cfg's Opener and
// RequireSealed are kept; the rest is fast retries and a short ack wait.
func Start(t testing.TB, seedPath string, cfg worker.Config) *Env {
	t.Helper()
	sim, url, token := Simulator(t, seedPath)
	e := &Env{NATS: natstest.Start(t), Sim: sim}
	api, err := apiops.New(url, apiops.StaticToken(token), apiops.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(e.NATS.Connect(t), api, worker.Config{
		ManageStreams: true, Concurrency: 4, MaxAttempts: 3, RetryInitial: 10 * time.Millisecond,
		RetryMax: 100 * time.Millisecond, ShutdownTimeout: 5 * time.Second, AckWait: 3 * time.Second,
		Opener: cfg.Opener, RequireSealed: cfg.RequireSealed, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("worker Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the worker did not stop")
		}
	})
	return e
}

// Simulator serves the APIOps simulator, seeded from seedPath, over HTTP until the test
// ends; url is where, token what it accepts.
func Simulator(t testing.TB, seedPath string) (sim *simulator.Server, url, token string) {
	t.Helper()
	seed, err := simulator.LoadSeed(seedPath)
	if err != nil {
		t.Fatal(err)
	}
	sim = simulator.New(seed)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL, seed.Token
}
