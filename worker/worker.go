package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Worker consumes commands and executes them. Create it with New, then call Run.
//
// Of all instances that share the consumer, one at a time takes commands: the holder
// of a lease (see lease and docs/design/fleet.md); the others are standbys, ready to
// take over. The active instance holds commands from delivery to acknowledgement, at
// most 4×Concurrency at once, and pulls only what it can hold, so memory does not grow
// with the backlog. Commands for the same resource run one at a time in stream order;
// the others run in parallel, with at most Concurrency of them executing against
// APIOps (waiting for a retry or the end of a pause included) while the rest look up
// or store their outcome.
//
// Worker is the wiring between the rooms doc.go maps: each of them owns its state and
// its lock; what Worker keeps itself is set once, or atomic.
type Worker struct {
	tracing
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	subjects messages.Subjects
	ownInbox string                 // "<inbox prefix>." when the connection has an inbox of its own
	secrets  messages.DecodeOptions // how sealed secrets are opened: sealing.go
	log      *zap.Logger
	gates    *gates // per project: gate.go
	store    *store
	lease    *lease
	observer Observer
	sources  *sourceSet             // the projects' consumers: intake.go
	shared   atomic.Pointer[source] // the consumer earlier versions share, until replaced

	room   *room       // the commands held: 4×Concurrency, more behind a barrier
	sched  *scheduler  // the commands held, their order and barriers: scheduler.go
	ids    *idLocks    // one command of an id at a time: idlocks.go
	exec   *executor   // APIOps requests under the retry policy: execute.go
	policy retryPolicy // retry.go; its backoff also paces the retries of NATS writes

	stopping   atomic.Bool // shutting down: hand back commands not yet started
	notedMsgID atomic.Bool // a Nats-Msg-Id that is not <project>/<id> was logged
	bound      atomic.Bool // the consumers were read
	setupErr   atomic.Pointer[string]
	ackWait    atomic.Int64 // the consumers' shortest AckWait: held commands are kept alive well within it
	// legacyAckWait is the AckWait of a shared consumer set up by a version before the
	// lease, whose instances pull from it on their own; 0 without one. It and the
	// fields below change only in the intake loop's goroutine (intake, takeOver).
	legacyAckWait  time.Duration
	nextAdoptCheck time.Time // when to ask again whether earlier instances are gone
	earlierRun     bool      // they did, when last asked
	toldOlder      bool      // that earlier instances run was logged
	retireAt       time.Time // when the shared consumer goes, whatever is still out on it
	// waitCtx ends when shutdown starts: commands waiting for a retry or the end of a
	// pause are handed back at once (see the contexts in doc.go).
	waitCtx  context.Context
	loseAcks atomic.Int32 // tests: how many acknowledgements to lose
	// bucketKey is the digest key kept in the idempotency bucket, when there are no
	// DigestKeys; digestTouched is when the active instance last wrote it again.
	bucketKey     atomic.Pointer[[]byte]
	digestTouched time.Time
}

// New returns a worker that reads commands through nc and executes them with api.
func New(nc *nats.Conn, api APIOps, cfg Config) (*Worker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// An asynchronous publish the server never answers fails after finishTimeout, as a
	// synchronous one would, rather than wait forever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(finishTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	ownInbox := ""
	if p := nc.Opts.InboxPrefix; p != "" && p+"." != nats.InboxPrefix {
		ownInbox = p + "."
	}
	var tr tracing // nil tracer: tracing off
	if cfg.TracerProvider != nil {
		tr.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	w := &Worker{
		tracing:  tr,
		lease:    newLease(cfg.Consumer, cfg.Instance, cfg.LeaseTimeout, cfg.Clock, cfg.Logger, cfg.Observer.Active),
		ownInbox: ownInbox,
		cfg:      cfg,
		nc:       nc,
		js:       js,
		subjects: messages.Subjects{Prefix: cfg.Prefix},
		log:      cfg.Logger,
		gates:    newGates(cfg.OutageThreshold, cfg.Logger, cfg.Clock, cfg.Observer.Paused),
		observer: cfg.Observer,
		sources:  newSourceSet(),
		room:     newRoom(cfg.held()),
		ids:      newIDLocks(),
		policy:   newRetryPolicy(cfg),
		secrets:  secretOptions(cfg),
	}
	w.sched = newScheduler(cfg.Clock, cfg.Logger, nc.IsConnected, w.room, cfg.held())
	w.exec = &executor{tracing: tr, api: api, gates: w.gates, slots: newSlots(cfg.Concurrency), policy: w.policy, probeEvery: cfg.RetryMax,
		lease: w.lease, nc: nc, observer: cfg.Observer, clock: cfg.Clock, log: cfg.Logger}
	return w, nil
}

// Ready returns nil when the worker is of use: connected to NATS, set up, and, when it
// is the active instance, not paused for every project it holds commands of (one
// tenant's pause is that tenant's); otherwise an error saying why not. A standby is
// ready: it takes over when the active instance goes.
func (w *Worker) Ready() error {
	if status := w.nc.Status(); status != nats.CONNECTED {
		return fmt.Errorf("NATS connection is %v", status)
	}
	if problem := w.setupErr.Load(); problem != nil {
		return fmt.Errorf("setting up: %s", *problem)
	}
	if !w.bound.Load() {
		return errors.New("the consumers are not read yet")
	}
	if w.stopping.Load() {
		return errors.New("shutting down")
	}
	if reason, all := w.gates.state(func(project string) bool { return w.room.holding(project) > 0 }); all && w.Active() {
		return fmt.Errorf("paused: %s", reason)
	}
	return nil
}

// Alive returns nil unless the worker cannot recover on its own: its NATS connection
// is closed, which nats.go does not undo (the server closed it for a protocol error, or
// reconnecting was given up). The process should then be restarted.
func (w *Worker) Alive() error {
	if w.nc.IsClosed() {
		return errors.New("the NATS connection is closed")
	}
	return nil
}

// Active reports whether this instance is the one that takes commands now.
func (w *Worker) Active() bool { return w.lease.current() != nil }

// Paused returns why the worker is paused for some project, or Running.
func (w *Worker) Paused() PauseReason {
	reason, _ := w.gates.state(nil)
	return reason
}

// Run takes commands until ctx ends, then shuts down. It sets the streams up first,
// retrying until NATS answers, and waits as a standby whenever another instance holds
// the lease. At shutdown it stops pulling, lets the commands in flight finish for up
// to ShutdownTimeout, hands every other command back (Nak) in stream order, and
// releases the lease, so that a standby takes over at once. It returns nil after a
// clean shutdown.
func (w *Worker) Run(ctx context.Context) error {
	if w.store == nil {
		if err := w.setupPersistently(ctx); err != nil {
			return nil // ctx ended before NATS answered: nothing to shut down
		}
	}
	r := w.start(ctx)
	w.log.Info("worker started", zap.String("role", "standby until it holds the lease"), zap.Int("concurrency", w.cfg.Concurrency),
		zap.String("consumer", w.cfg.Consumer), zap.String("stream", w.cfg.CommandStream), zap.String("instance", w.cfg.Instance))
	w.serveTerms(ctx)
	w.shutdown(r)
	return nil
}

// running is what start started, for shutdown to stop in order.
type running struct {
	requests     context.Context // APIOps requests and the terminal writes
	stopRequests context.CancelFunc
	stopWaits    context.CancelFunc // ends w.waitCtx
	stopLease    context.CancelFunc
	stopLookups  context.CancelFunc
	leaseDone    chan struct{}
	quit         chan struct{} // ends the processing goroutines and keepAlive
	wg           sync.WaitGroup
}

// start makes Run's contexts (see doc.go) and starts its goroutines: one processing
// goroutine for every command that may be held (looking up and storing outcomes in
// NATS need not wait for a free APIOps request, which the slots bound), keepAlive, the
// record lookups and the lease.
func (w *Worker) start(ctx context.Context) *running {
	r := &running{quit: make(chan struct{}), leaseDone: make(chan struct{})}
	// APIOps requests run on their own context so that shutdown gives them
	// ShutdownTimeout; waits for a retry or a pause end as soon as shutdown starts.
	r.requests, r.stopRequests = context.WithCancel(context.WithoutCancel(ctx))
	w.waitCtx, r.stopWaits = context.WithCancel(r.requests)
	leaseCtx, stopLease := context.WithCancel(r.requests)
	lookupsCtx, stopLookups := context.WithCancel(r.requests)
	r.stopLease, r.stopLookups = stopLease, stopLookups
	for range w.cfg.held() {
		r.wg.Go(func() {
			for {
				t, ok := w.sched.ready.pop(r.quit)
				if !ok {
					return
				}
				w.process(r.requests, t)
			}
		})
	}
	r.wg.Go(func() { w.keepAlive(r.quit) })
	r.wg.Go(func() { w.store.runLookups(lookupsCtx) })
	go func() { defer close(r.leaseDone); w.lease.run(leaseCtx) }()
	return r
}

// serveTerms serves every lease term this instance wins, until ctx ends.
func (w *Worker) serveTerms(ctx context.Context) {
	for {
		t := w.lease.await(ctx)
		if t == nil {
			return
		}
		w.serve(ctx, t)
		if ctx.Err() != nil {
			w.sched.unpark(true)
			return
		}
		// The lease is lost: every held command is dropped (the active instance gets
		// it), those executing finish their request first.
		w.sched.awaitIdle(nil)
		w.gates.reset()
		w.lease.standBy(true)
	}
}

// shutdown lets the commands in flight finish for up to ShutdownTimeout, hands the
// others back in stream order, releases the lease and stops what start started.
func (w *Worker) shutdown(r *running) {
	w.stopping.Store(true)
	r.stopWaits()
	w.log.Info("shutting down: no new commands; waiting for those in flight", zap.Int("held", w.sched.count()), zap.Duration("timeout", w.cfg.ShutdownTimeout))
	if !w.sched.awaitIdle(w.cfg.Clock.After(w.cfg.ShutdownTimeout)) {
		w.log.Warn("shutdown timeout: handing the remaining commands back")
		r.stopRequests()
		w.sched.awaitIdle(nil)
	}
	w.sched.handBackInOrder()
	r.stopLease() // renewals end before the release, which must not race one
	<-r.leaseDone
	releaseCtx, cancelRelease := context.WithTimeout(context.Background(), finishTimeout)
	w.lease.release(releaseCtx)
	cancelRelease()
	r.stopLookups()
	close(r.quit)
	r.wg.Wait()
	w.store.batchGet.close()
	r.stopRequests()
	w.log.Info("worker stopped")
}

// serve takes commands for one lease term, until ctx ends or the term does. The
// term's context ends the intake and the takeover; its wait context, the commands'
// waitCtx, ends their waits with the term or at shutdown.
func (w *Worker) serve(ctx context.Context, t *term) {
	termCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	termWait, cancelWait := context.WithCancel(w.waitCtx)
	defer cancelWait()
	go func() {
		select {
		case <-t.lost:
			cancel()
			cancelWait()
		case <-termCtx.Done():
		}
	}()
	w.sched.beginTerm(t, termWait)
	if w.takeOver(termCtx, t) {
		w.intake(termCtx)
	}
	if t.ended() {
		w.dropParked()
	}
}

// setupPersistently sets up until it works or ctx ends, backing off, not ready
// meanwhile, and logging each new problem once: replicas that start at once against a
// fresh cluster race to create the streams, and a node or the meta leader may be down.
func (w *Worker) setupPersistently(ctx context.Context) error {
	wait := backoff.NewExponentialBackOff()
	wait.InitialInterval, wait.MaxInterval, wait.MaxElapsedTime = w.cfg.RetryInitial, w.cfg.RetryMax, 0
	wait.Reset()
	last := ""
	for {
		err := w.Setup(ctx)
		if err == nil {
			if last != "" {
				w.log.Info("set up: the streams, the bucket and the consumer are ready")
			}
			w.setupErr.Store(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		problem := err.Error()
		w.setupErr.Store(&problem)
		if problem != last {
			w.log.Warn("cannot set up the streams, the bucket and the consumer yet; retrying", zap.Error(err))
			last = problem
		}
		select {
		case <-w.cfg.Clock.After(wait.NextBackOff()):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// keepAlive extends the ack deadline of every held command, so that commands waiting
// for their resource, a retry or the end of a pause are not redelivered meanwhile. A
// fenced instance stops: its commands must come back to the next active instance.
// Commands are touched in stream order, so that if this instance dies they expire, and
// come back, in that order.
func (w *Worker) keepAlive(quit <-chan struct{}) {
	for {
		select {
		case <-w.cfg.Clock.After(time.Duration(w.ackWait.Load()) / 3):
		case <-quit:
			return
		}
		if !w.lease.canStart() {
			continue
		}
		for _, t := range w.sched.inStreamOrder() {
			if !w.lease.canStart() {
				break // frozen or cut off in the middle of the round: no more
			}
			_ = t.msg.InProgress() // fails only for a command acknowledged meanwhile
		}
	}
}

// Setup creates or updates the streams and the idempotency bucket (when ManageStreams
// is set), or binds to them as an operator made them, and binds the consumers there
// are; the active instance makes the projects' consumers as projects appear (intake.go).
// Run calls it when it has not been called.
func (w *Worker) Setup(ctx context.Context) error {
	kv, err := w.setupStreams(ctx)
	if err != nil {
		return err
	}
	stream, err := w.js.Stream(ctx, "KV_"+w.cfg.IdempotencyBucket)
	if err != nil {
		return fmt.Errorf("key-value bucket %s: %w", w.cfg.IdempotencyBucket, err)
	}
	st := &store{kv: kv, stream: stream, bucket: w.cfg.IdempotencyBucket, log: w.log, clock: w.cfg.Clock,
		lookups: make(chan *lookup)}
	if err := st.detectLegacy(ctx); err != nil {
		return err
	}
	if err := w.loadSources(ctx); err != nil {
		return err
	}
	if w.cfg.DigestKeys == nil {
		key, err := st.loadBucketDigestKey(ctx)
		if err != nil {
			return err
		}
		if key != nil {
			w.bucketKey.Store(&key)
		}
	}
	if room := w.nc.MaxPayload() - deadLetterHeaderRoom; int64(w.cfg.MaxCommandSize) > room {
		w.log.Warn("commands may be larger than their dead letters can hold whole: the largest are kept cut short",
			zap.Int32("max_command_size", w.cfg.MaxCommandSize), zap.Int64("server_max_payload", w.nc.MaxPayload()))
	}
	// Last, so that a failed attempt leaves no subscription behind.
	if st.batchGet, err = newBatchGetter(w.nc, stream); err != nil {
		return err
	}
	if w.store != nil { // Setup called again
		w.store.batchGet.close()
	}
	w.store = st
	w.exec.records = st
	w.lease.setBucket(kv)
	return nil
}
