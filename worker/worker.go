package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Worker consumes commands and executes them. Create it with New, then call Run.
//
// Commands are held from delivery to acknowledgement: at most 2×Concurrency at once,
// plus at most Concurrency prefetched by the pull, so memory does not grow with the
// backlog. Commands for the same resource run one at a time in delivery order; the
// others run up to Concurrency at once.
type Worker struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	api      APIOps
	subjects messages.Subjects
	log      *zap.Logger
	gate     *gate
	store    *store
	consumer jetstream.Consumer

	slots    chan struct{} // one per held command
	ready    chan *task    // held commands whose resource is free, in delivery order
	stopping atomic.Bool   // shutting down: hand back commands not yet started
	loseAcks atomic.Int32  // tests: how many acknowledgements to lose

	mu      sync.Mutex
	held    map[*task]struct{}
	waiting map[string][]*task // by resource key; present while one of the key runs
	idle    chan struct{}      // closed when nothing is held, while shutting down
}

// task is one delivered command.
type task struct {
	msg       jetstream.Msg
	seq       uint64 // stream sequence
	delivered uint64 // times delivered, this one included
	received  time.Time
	cmd       *messages.Command // never nil; partly filled when decodeErr is set
	decodeErr error
	key       string
	attempts  attempts
}

// New returns a worker that reads commands through nc and executes them with api.
func New(nc *nats.Conn, api APIOps, cfg Config) (*Worker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	held := 2 * cfg.Concurrency
	return &Worker{
		cfg:      cfg,
		nc:       nc,
		js:       js,
		api:      api,
		subjects: messages.Subjects{Prefix: cfg.Prefix},
		log:      cfg.Logger,
		gate:     newGate(cfg.OutageThreshold, cfg.Logger, cfg.Clock),
		slots:    make(chan struct{}, held),
		ready:    make(chan *task, held),
		held:     make(map[*task]struct{}),
		waiting:  make(map[string][]*task),
	}, nil
}

// Ready returns nil when the worker takes commands: connected to NATS, bound to its
// consumer and not paused; otherwise an error saying why not.
func (w *Worker) Ready() error {
	if status := w.nc.Status(); status != nats.CONNECTED {
		return fmt.Errorf("NATS connection is %v", status)
	}
	if w.consumer == nil {
		return errors.New("consumer not bound yet")
	}
	if reason, _, _ := w.gate.state(); reason != Running {
		return fmt.Errorf("paused: %s", reason)
	}
	if w.stopping.Load() {
		return errors.New("shutting down")
	}
	return nil
}

// Paused returns why the worker is paused, or Running.
func (w *Worker) Paused() PauseReason {
	reason, _, _ := w.gate.state()
	return reason
}

// Run takes commands until ctx ends, then shuts down: it stops pulling, lets commands
// in flight finish for up to ShutdownTimeout, and hands the rest back to the stream
// (Nak) so that another instance takes them at once. It returns nil after a clean
// shutdown.
func (w *Worker) Run(ctx context.Context) error {
	if w.consumer == nil {
		if err := w.Setup(ctx); err != nil {
			return err
		}
	}
	// Commands run on their own context so that shutdown gives them ShutdownTimeout.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for range w.cfg.Concurrency {
		wg.Go(func() {
			for {
				select {
				case t := <-w.ready:
					w.process(runCtx, t)
				case <-quit:
					return
				}
			}
		})
	}
	wg.Go(func() { w.keepAlive(quit) })
	w.log.Info("worker started", zap.Int("concurrency", w.cfg.Concurrency), zap.String("consumer", w.cfg.Consumer), zap.String("stream", w.cfg.CommandStream))

	w.pull(ctx)

	w.stopping.Store(true)
	w.mu.Lock()
	w.idle = make(chan struct{})
	if len(w.held) == 0 {
		close(w.idle)
	}
	idle := w.idle
	inFlight := len(w.held)
	w.mu.Unlock()
	w.log.Info("shutting down: no new commands; waiting for those in flight", zap.Int("held", inFlight), zap.Duration("timeout", w.cfg.ShutdownTimeout))
	select {
	case <-idle:
	case <-time.After(w.cfg.ShutdownTimeout):
		w.log.Warn("shutdown timeout: handing the remaining commands back")
		cancelRun()
		<-idle
	}
	close(quit)
	wg.Wait()
	w.log.Info("worker stopped")
	return nil
}

// pull delivers commands into the worker until ctx ends. While the worker is paused it
// takes none: it drains what the pull prefetched and hands it back.
func (w *Worker) pull(ctx context.Context) {
	for ctx.Err() == nil {
		reason, resumed, paused := w.gate.state()
		if reason != Running {
			select {
			case <-resumed:
			case <-ctx.Done():
			}
			continue
		}
		it, err := w.consumer.Messages(jetstream.PullMaxMessages(w.cfg.Concurrency))
		if err != nil {
			w.log.Error("cannot pull commands; retrying", zap.Error(err))
			select {
			case <-w.cfg.Clock.After(w.cfg.RetryInitial):
			case <-ctx.Done():
			}
			continue
		}
		w.consume(ctx, it, paused)
	}
}

func (w *Worker) consume(ctx context.Context, it jetstream.MessagesContext, paused <-chan struct{}) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-paused:
		case <-done:
		}
		it.Drain()
	}()
	stopped := func() bool {
		select {
		case <-ctx.Done():
			return true
		case <-paused:
			return true
		default:
			return false
		}
	}
	for {
		draining := stopped()
		if !draining {
			select {
			case w.slots <- struct{}{}:
			case <-ctx.Done():
				continue
			case <-paused:
				continue
			}
		}
		msg, err := it.Next()
		if err != nil {
			if !draining {
				<-w.slots
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			w.log.Warn("pulling commands", zap.Error(err))
			select { // no busy loop while the server is unreachable
			case <-w.cfg.Clock.After(w.cfg.RetryInitial):
			case <-ctx.Done():
			}
			continue
		}
		if draining || stopped() {
			// Prefetched while stopping or pausing: back to the stream, untouched.
			if err := msg.Nak(); err != nil {
				w.log.Warn("handing a prefetched command back", zap.Error(err))
			}
			if !draining {
				<-w.slots
			}
			continue
		}
		w.admit(msg)
	}
}

// admit decodes a delivered command and queues it behind earlier commands for the same
// resource.
func (w *Worker) admit(msg jetstream.Msg) {
	t := &task{msg: msg, received: w.cfg.Clock.Now().UTC(), delivered: 1}
	if meta, err := msg.Metadata(); err == nil {
		t.seq, t.delivered = meta.Sequence.Stream, meta.NumDelivered
	}
	project, typeName, err := w.subjects.ParseCommand(msg.Subject())
	if err != nil {
		t.cmd = &messages.Command{}
		t.decodeErr = &messages.Error{Code: messages.CodeUnknownType, Field: "type", Message: err.Error()}
	} else {
		t.cmd, t.decodeErr = messages.Decode(project, typeName, msg.Data())
	}
	if t.decodeErr == nil {
		t.key = t.cmd.ResourceKey()
	} else {
		t.key = "invalid:" + strconv.FormatUint(t.seq, 10) // nothing to order against
	}
	w.mu.Lock()
	w.held[t] = struct{}{}
	queue, busy := w.waiting[t.key]
	if busy {
		w.waiting[t.key] = append(queue, t)
	} else {
		w.waiting[t.key] = nil
	}
	w.mu.Unlock()
	if !busy {
		w.ready <- t // never blocks: ready has a place for every held command
	}
}

// release forgets a finished or handed-back command and starts the next one for its
// resource.
func (w *Worker) release(t *task) {
	w.mu.Lock()
	delete(w.held, t)
	var next *task
	if queue := w.waiting[t.key]; len(queue) == 0 {
		delete(w.waiting, t.key)
	} else {
		next, w.waiting[t.key] = queue[0], queue[1:]
	}
	if w.idle != nil && len(w.held) == 0 {
		close(w.idle)
	}
	w.mu.Unlock()
	<-w.slots
	if next != nil {
		w.ready <- next
	}
}

// keepAlive extends the ack deadline of every held command, so that commands waiting
// for their resource, a retry or the end of a pause are not redelivered meanwhile.
func (w *Worker) keepAlive(quit <-chan struct{}) {
	ticker := time.NewTicker(w.cfg.AckWait / 3)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
		case <-quit:
			return
		}
		w.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(w.held))
		for t := range w.held {
			msgs = append(msgs, t.msg)
		}
		w.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress() // fails only for a command acknowledged meanwhile
		}
	}
}
