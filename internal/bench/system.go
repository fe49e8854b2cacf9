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

// workerSystem runs a worker.Worker; its latencies come from the stored results.
type workerSystem struct {
	w       *worker.Worker
	results jetstream.JetStream // reads the result stream

	cancel   context.CancelFunc
	done     chan struct{} // closed when Run has returned
	err      error         // Run's error; read after done
	stopOnce sync.Once
}

func (s *workerSystem) start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		s.err = s.w.Run(ctx)
		close(s.done)
	}()
	return nil
}

func (s *workerSystem) failure() error {
	select {
	case <-s.done:
		return fmt.Errorf("worker stopped during the run: %v", s.err)
	default:
		return nil
	}
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
