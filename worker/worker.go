package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
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
type Worker struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	api      APIOps
	subjects messages.Subjects
	ownInbox string                 // "<inbox prefix>." when the connection has an inbox of its own
	secrets  messages.DecodeOptions // how sealed secrets are opened: sealing.go
	log      *zap.Logger
	gates    *gates // per project: gate.go
	store    *store
	lease    *lease
	observer Observer
	tracer   trace.Tracer
	sources  *sourceSet             // the projects' consumers: intake.go
	shared   atomic.Pointer[source] // the consumer earlier versions share, until replaced

	room       *room       // the commands held: 4×Concurrency, more behind a barrier
	slots      *slots      // the APIOps requests in flight: Concurrency, fairness.go
	ready      *readyQueue // held commands whose resource is free, in stream order
	stopping   atomic.Bool // shutting down: hand back commands not yet started
	notedMsgID atomic.Bool // a Nats-Msg-Id that is not <project>/<id> was logged
	bound      atomic.Bool // the consumers were read
	setupErr   atomic.Pointer[string]
	ackWait    atomic.Int64 // the consumers' shortest AckWait: held commands are kept alive well within it
	// legacyAckWait is the AckWait of a shared consumer set up by a version before the
	// lease, whose instances pull from it on their own; 0 without one.
	legacyAckWait  time.Duration
	nextAdoptCheck time.Time // when to ask again whether earlier instances are gone
	earlierRun     bool      // they did, when last asked
	toldOlder      bool      // that earlier instances run was logged
	retireAt       time.Time // when the shared consumer goes, whatever is still out on it
	// waitCtx ends when shutdown starts: commands waiting for a retry or the end of a
	// pause are handed back at once.
	waitCtx  context.Context
	loseAcks atomic.Int32 // tests: how many acknowledgements to lose
	// bucketKey is the digest key kept in the idempotency bucket, when there are no
	// DigestKeys; digestTouched is when the active instance last wrote it again.
	bucketKey     atomic.Pointer[[]byte]
	digestTouched time.Time

	mu            sync.Mutex
	held          map[*task]struct{}
	resources     *resources           // which commands may run: see resources.go
	idLocks       map[string]*idLock   // by command id, while a command with the id runs
	idle          chan struct{}        // closed when nothing is held, while awaited
	handBacks     []*task              // to hand back in stream order at shutdown
	barriers      map[*source]*barrier // consumers whose new commands are parked: takeover.go
	copies        map[copyKey]int      // how many deliveries of each command are held
	recentlyAcked ackedSet             // commands acknowledged here in the last two AckWaits or so
	// term is the lease term commands are admitted in, and termWait ends when that
	// term does or shutdown starts.
	term     *term
	termWait context.Context
}

// copyKey is one command of a consumer, of which several deliveries may be held.
type copyKey struct {
	src *source
	seq uint64
}

// ackedSet remembers the commands acknowledged lately in two generations, so that
// forgetting the old ones costs nothing per command. A copy of an acknowledged command
// arrives within an AckWait, if at all.
type ackedSet struct {
	current, previous map[copyKey]struct{}
	since             time.Time // when current started
}

func (a *ackedSet) add(k copyKey) {
	if a.current == nil {
		a.current = make(map[copyKey]struct{})
	}
	a.current[k] = struct{}{}
}

func (a *ackedSet) has(k copyKey) bool {
	_, now := a.current[k]
	_, before := a.previous[k]
	return now || before
}

// age starts a new generation once the current one is older than keep.
func (a *ackedSet) age(now time.Time, keep time.Duration) {
	if now.Sub(a.since) >= keep {
		a.previous, a.current, a.since = a.current, nil, now
	}
}

// task is one delivered command.
type task struct {
	msg       jetstream.Msg
	src       *source // the consumer it came from; a plan's step shares the plan's
	seq       uint64  // stream sequence
	delivered uint64  // times delivered, this one included
	received  time.Time
	cmd       *messages.Command // never nil; partly filled when decodeErr is set
	decodeErr error
	// keys are the resources: commands with a key in common run one at a time, in
	// stream order (resources.go). A command has one; a plan those of all its steps.
	keys     []string
	attempts attempts
	// planOf is the plan this task is a step of: it shares the plan's message and
	// finishes without replying or acknowledging, which the plan does once.
	planOf *task
	// term is the lease term the command was delivered in; waitCtx ends when that
	// term does (the command is dropped) or when shutdown starts (handed back).
	term    *term
	waitCtx context.Context
	trace   *traced // nil when tracing is off (tracing.go)
	// acked is set before the command's acknowledgement is sent: a barrier no longer
	// counts it as out.
	acked atomic.Bool
}

// commandKey is the command's identity: its project and id.
func (t *task) commandKey() commandKey { return commandKey{project: t.cmd.Project, id: t.cmd.ID} }

// msgID is the Nats-Msg-Id of the command's result and dead letter.
func (t *task) msgID() string { return messages.MsgID(t.cmd.Project, t.cmd.ID) }

// messageMsgID is a Nats-Msg-Id for an outcome of this message alone, not of its id.
func (t *task) messageMsgID() string { return t.msgID() + "@" + strconv.FormatUint(t.seq, 10) }

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
	var tracer trace.Tracer // nil: tracing off
	if cfg.TracerProvider != nil {
		tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	return &Worker{
		tracer:    tracer,
		lease:     newLease(cfg.Consumer, cfg.Instance, cfg.LeaseTimeout, cfg.Clock, cfg.Logger, cfg.Observer.Active),
		ownInbox:  ownInbox,
		cfg:       cfg,
		nc:        nc,
		js:        js,
		api:       api,
		subjects:  messages.Subjects{Prefix: cfg.Prefix},
		log:       cfg.Logger,
		gates:     newGates(cfg.OutageThreshold, cfg.Logger, cfg.Clock, cfg.Observer.Paused),
		observer:  cfg.Observer,
		sources:   newSourceSet(),
		room:      newRoom(cfg.held()),
		slots:     newSlots(cfg.Concurrency),
		ready:     newReadyQueue(),
		held:      make(map[*task]struct{}),
		barriers:  make(map[*source]*barrier),
		copies:    make(map[copyKey]int),
		resources: newResources(),
		idLocks:   make(map[string]*idLock),
		secrets:   secretOptions(cfg),
	}, nil
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
	// APIOps requests run on their own context so that shutdown gives them
	// ShutdownTimeout; waits for a retry or a pause end as soon as shutdown starts.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	var cancelWaits context.CancelFunc
	w.waitCtx, cancelWaits = context.WithCancel(runCtx)
	defer cancelWaits()
	leaseCtx, stopLease := context.WithCancel(runCtx)
	defer stopLease()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	// A goroutine for every command held: looking up and storing outcomes in NATS need
	// not wait for a free APIOps request, which execSlots bound.
	for range w.cfg.held() {
		wg.Go(func() {
			for {
				t, ok := w.ready.pop(quit)
				if !ok {
					return
				}
				w.process(runCtx, t)
			}
		})
	}
	wg.Go(func() { w.keepAlive(quit) })
	lookupsCtx, stopLookups := context.WithCancel(runCtx)
	defer stopLookups()
	wg.Go(func() { w.store.runLookups(lookupsCtx) })
	leaseDone := make(chan struct{})
	go func() { defer close(leaseDone); w.lease.run(leaseCtx) }()
	w.log.Info("worker started", zap.String("role", "standby until it holds the lease"), zap.Int("concurrency", w.cfg.Concurrency),
		zap.String("consumer", w.cfg.Consumer), zap.String("stream", w.cfg.CommandStream), zap.String("instance", w.cfg.Instance))

	for {
		t := w.lease.await(ctx)
		if t == nil {
			break
		}
		w.serve(ctx, t)
		if ctx.Err() != nil {
			w.unparkForShutdown()
			break
		}
		// The lease is lost: every held command is dropped (the active instance gets
		// it), those executing finish their request first.
		w.awaitIdle(nil)
		w.gates.reset()
		w.lease.standBy(true)
	}

	w.stopping.Store(true)
	cancelWaits()
	w.mu.Lock()
	inFlight := len(w.held)
	w.mu.Unlock()
	w.log.Info("shutting down: no new commands; waiting for those in flight", zap.Int("held", inFlight), zap.Duration("timeout", w.cfg.ShutdownTimeout))
	if !w.awaitIdle(w.cfg.Clock.After(w.cfg.ShutdownTimeout)) {
		w.log.Warn("shutdown timeout: handing the remaining commands back")
		cancelRun()
		w.awaitIdle(nil)
	}
	w.handBackInOrder()
	stopLease() // renewals end before the release, which must not race one
	<-leaseDone
	releaseCtx, cancelRelease := context.WithTimeout(context.Background(), finishTimeout)
	w.lease.release(releaseCtx)
	cancelRelease()
	stopLookups()
	close(quit)
	wg.Wait()
	w.store.batchGet.close()
	w.log.Info("worker stopped")
	return nil
}

// serve takes commands for one lease term, until ctx ends or the term does.
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
	w.mu.Lock()
	w.term, w.termWait = t, termWait
	w.mu.Unlock()
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

// admit decodes a command delivered from src and queues it behind earlier commands for
// the same resource, or parks it while the worker takes over.
func (w *Worker) admit(msg jetstream.Msg, src *source) {
	t := &task{msg: msg, src: src, received: w.cfg.Clock.Now().UTC(), delivered: 1}
	if meta, err := msg.Metadata(); err == nil {
		t.seq, t.delivered = meta.Sequence.Stream, meta.NumDelivered
	}
	project, typeName, err := w.subjects.ParseCommand(msg.Subject())
	if err != nil {
		t.cmd = &messages.Command{}
		t.decodeErr = &messages.Error{Code: messages.CodeUnknownType, Field: "type", Message: err.Error()}
	} else {
		t.cmd, t.decodeErr = messages.DecodeWith(project, typeName, msg.Data(), w.secrets)
	}
	if t.cmd.ReplyTo != "" {
		if problem := w.checkReplyTo(t.cmd.ReplyTo); problem != "" {
			t.cmd.ReplyTo = ""
			if t.decodeErr == nil {
				t.decodeErr = &messages.Error{Code: messages.CodeInvalidCommand, Field: "replyTo", Message: problem}
			}
		}
	}
	if t.decodeErr == nil {
		t.keys = t.cmd.ResourceKeys()
		w.noteMsgID(msg, t)
	} else {
		t.keys = []string{"invalid:" + strconv.FormatUint(t.seq, 10)} // nothing to order against
	}
	w.traceDelivery(t)
	w.mu.Lock()
	t.term, t.waitCtx = w.term, w.termWait
	if t.term.ended() {
		// Delivered to a pull sent before this instance lost the lease (it was frozen,
		// say): another instance runs the consumer's commands now.
		w.mu.Unlock()
		w.nakDropped(t)
		t.traceEnd(nil, errDropped)
		w.room.free(src.roomKey(), 1)
		return
	}
	w.held[t] = struct{}{}
	w.copies[copyKey{src, t.seq}]++
	if w.recentlyAcked.has(copyKey{src, t.seq}) {
		t.acked.Store(true)
	}
	if src.watching {
		w.noteDeliveryLocked(src, msg)
	}
	if b := w.barriers[src]; b != nil {
		b.parked = append(b.parked, t)
		w.mu.Unlock()
		return
	}
	start := w.enqueueLocked(t)
	w.mu.Unlock()
	if start {
		w.ready.push(t)
	}
}

// enqueueLocked queues t behind the commands for its resources and reports whether it
// may start now.
func (w *Worker) enqueueLocked(t *task) (start bool) {
	start = w.resources.enqueue(t)
	if !start && w.resources.overtakes(t) {
		w.log.Warn("a command arrived after a later one for its resource started", zap.String("id", t.cmd.ID), zap.Uint64("seq", t.seq))
	}
	return start
}

func int64Cmp(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// noteMsgID logs, once per process, a command whose Nats-Msg-Id is not its
// project-scoped id: its publisher shares JetStream's duplicate window with every
// project that uses the same bare ids, and should move to <project>/<id>.
func (w *Worker) noteMsgID(msg jetstream.Msg, t *task) {
	if w.notedMsgID.Load() {
		return
	}
	if id := msg.Headers().Get(messages.HeaderMsgID); id != "" && id != t.msgID() && w.notedMsgID.CompareAndSwap(false, true) {
		w.log.Warn("a publisher sets Nats-Msg-Id to something other than <project>/<id>; JetStream may drop its command as another project's duplicate",
			zap.String("project", t.cmd.Project), zap.String("id", t.cmd.ID), zap.String("nats_msg_id", id))
	}
}

// checkReplyTo returns what is wrong with a command's replyTo, or "": besides the
// contract's rules (Decode checks them), a reply must not land in the worker's own
// inbox, where it could pose as an answer to the worker's pulls or JetStream requests,
// should a project's inbox and the worker's ever meet.
func (w *Worker) checkReplyTo(replyTo string) string {
	if w.ownInbox != "" && (strings.HasPrefix(replyTo, w.ownInbox) || replyTo+"." == w.ownInbox) {
		return "must not be under " + w.ownInbox + ", the worker's own inbox"
	}
	return ""
}

// release forgets a finished, dropped or handed-back command and frees its
// resources, starting the commands that now hold all of theirs.
func (w *Worker) release(t *task) {
	w.mu.Lock()
	w.forgetLocked(t)
	ready := w.resources.release(t)
	w.mu.Unlock()
	for _, next := range ready {
		w.ready.push(next)
	}
}

// forgetLocked drops t from the held commands and frees its room.
func (w *Worker) forgetLocked(t *task) {
	if _, held := w.held[t]; held {
		if k := (copyKey{t.src, t.seq}); w.copies[k] <= 1 {
			delete(w.copies, k)
		} else {
			w.copies[k]--
		}
	}
	delete(w.held, t)
	if w.idle != nil && len(w.held) == 0 {
		close(w.idle)
	}
	w.room.free(t.src.roomKey(), 1)
}

// awaitIdle waits until nothing is held, or until timeout fires (nil: no timeout); it
// reports whether nothing is held.
func (w *Worker) awaitIdle(timeout <-chan time.Time) bool {
	w.mu.Lock()
	w.idle = make(chan struct{})
	if len(w.held) == 0 {
		close(w.idle)
	}
	idle := w.idle
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.idle = nil
		w.mu.Unlock()
	}()
	select {
	case <-idle:
		return true
	case <-timeout:
		return false
	}
}

// handBackLater keeps t, unfinished, for handBackInOrder.
func (w *Worker) handBackLater(t *task) {
	w.mu.Lock()
	w.handBacks = append(w.handBacks, t)
	w.mu.Unlock()
}

// handBackInOrder returns the unfinished commands to the stream at shutdown, in stream
// order and from one goroutine: the server redelivers Nak'd commands first come,
// first served, so the next active instance gets them in order.
func (w *Worker) handBackInOrder() {
	w.mu.Lock()
	backs := w.handBacks
	w.handBacks = nil
	w.mu.Unlock()
	slices.SortFunc(backs, func(a, b *task) int { return int64Cmp(a.seq, b.seq) })
	for _, t := range backs {
		if err := t.msg.Nak(); err != nil {
			w.log.Warn("handing a command back", zap.String("id", t.cmd.ID), zap.Error(err))
		}
	}
	if len(backs) > 0 {
		w.log.Info("handed commands back to the stream, in order", zap.Int("commands", len(backs)))
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
		w.mu.Lock()
		tasks := make([]*task, 0, len(w.held)+len(w.handBacks))
		for t := range w.held {
			tasks = append(tasks, t)
		}
		tasks = append(tasks, w.handBacks...)
		w.mu.Unlock()
		slices.SortFunc(tasks, func(a, b *task) int { return int64Cmp(a.seq, b.seq) })
		for _, t := range tasks {
			if !w.lease.canStart() {
				break // frozen or cut off in the middle of the round: no more
			}
			_ = t.msg.InProgress() // fails only for a command acknowledged meanwhile
		}
	}
}
