package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/worker"
)

// system is what a run measures: the worker or the baseline.
type system interface {
	// start begins taking commands; the timed part starts just before.
	start(ctx context.Context) error
	// failure returns why the system cannot finish the run, or nil.
	failure() error
	// stop stops taking commands and waits for those in flight; it may be called twice.
	stop()
	// latencies returns receipt → result of every command finished, after stop.
	latencies(ctx context.Context) ([]time.Duration, error)
}

// workerSystem runs one or more worker.Worker instances sharing the consumer, as a
// fleet does; its latencies come from the stored results.
type workerSystem struct {
	workers []*worker.Worker
	results jetstream.JetStream // reads the result stream

	cancel   context.CancelFunc
	done     chan struct{} // closed when every Run has returned
	stopOnce sync.Once

	mu  sync.Mutex
	err error // why an instance stopped early
}

func (s *workerSystem) start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range s.workers {
		wg.Go(func() {
			err := w.Run(ctx)
			if ctx.Err() == nil {
				s.mu.Lock()
				s.err = fmt.Errorf("an instance stopped during the run: %v", err)
				s.mu.Unlock()
			}
		})
	}
	go func() { wg.Wait(); close(s.done) }()
	return nil
}

func (s *workerSystem) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *workerSystem) stop() {
	s.stopOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
			<-s.done
		}
	})
}

func (s *workerSystem) latencies(ctx context.Context) ([]time.Duration, error) {
	return resultLatencies(ctx, s.results)
}

// baselineSystem adapts the baseline to system.
type baselineSystem struct {
	*baseline
	inFlight int
	stopOnce sync.Once
}

func (s *baselineSystem) start(ctx context.Context) error { return s.baseline.start(ctx, s.inFlight) }

func (s *baselineSystem) stop() {
	s.stopOnce.Do(func() {
		if s.it != nil {
			s.baseline.stop()
		}
	})
}

func (s *baselineSystem) latencies(context.Context) ([]time.Duration, error) {
	return s.baseline.latencies(), nil
}
