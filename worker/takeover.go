package worker

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Taking over from another instance keeps per-resource order: a new active instance
// starts no command of a consumer until every command of it the previous one held is
// in its own hands, and then runs them in stream order. During its term it watches
// each consumer's delivery sequence: a command delivered to any other instance (a
// frozen predecessor's pull, sent as it thawed) raises the barrier again. See
// docs/design/fleet.md.

// barrier parks the commands a consumer delivers while others of its commands may
// still be out with another instance. Meanwhile the consumer's project may hold as many
// commands as the consumer lets be unacknowledged (room.lift): every command out fits,
// and the server redelivers commands even at that limit, so the barrier ends once they
// are back.
type barrier struct {
	parked    []*task
	checkedAt time.Time // when the consumer was last asked
	// leader is the consumer's leader whose answer the barrier may trust: one that was
	// leader at the previous reading too, so that a leader still catching up on its
	// log does not end it.
	leader string
}

const (
	// takeoverPoll is how often a new active instance looks at the consumers while it
	// waits for the previous one's commands.
	takeoverPoll = 250 * time.Millisecond
	// redeliverySlack covers the server's timer for expired acknowledgements.
	redeliverySlack = time.Second
)

// takeOver prepares a new term: it binds the consumers the previous active instance
// made, replaces the shared consumer of earlier versions when none of them runs any
// more, waits out the commands a vanished predecessor held, and raises a barrier on
// every consumer that still has commands out. It returns false when ctx ends first.
func (w *Worker) takeOver(ctx context.Context, t *term) bool {
	if !w.persist(ctx, "read the command stream's consumers", w.loadSources) {
		return false
	}
	if shared := w.shared.Load(); shared != nil {
		switch {
		case w.earlierInstancesRun(ctx, true) && w.legacyAckWait != 0:
			return true // instances older than the lease take commands too: nothing to wait for
		case !w.earlierInstancesRun(ctx, false):
			if !w.retireShared(ctx, shared, w.outDeadline(t)) {
				return false
			}
		}
	}
	infos, ok := w.readConsumers(ctx)
	if !ok {
		return false
	}
	if out := commandsOut(infos); out > 0 && !t.clean {
		deadline := w.outDeadline(t)
		w.log.Info("waiting for the commands the previous instance held to come back", zap.Int("commands", out),
			zap.Duration("at_most", deadline.Sub(w.cfg.Clock.Now())))
		for w.cfg.Clock.Now().Before(deadline) && out > 0 {
			select {
			case <-w.cfg.Clock.After(min(takeoverPoll, deadline.Sub(w.cfg.Clock.Now()))):
			case <-ctx.Done():
				return false
			}
			if infos, ok = w.readConsumers(ctx); !ok {
				return false
			}
			out = commandsOut(infos)
		}
	}
	for src, info := range infos {
		w.startTerm(src, info, false)
	}
	return true
}

// outDeadline is when every command a predecessor that stopped renewing at
// t.lastSeen held has come back: it fenced itself, stopped keeping them alive, and
// their AckWait ran out.
func (w *Worker) outDeadline(t *term) time.Time {
	ackWait := max(time.Duration(w.ackWait.Load()), w.legacyAckWait)
	return t.lastSeen.Add(w.lease.fenceAfter() + pullWait + ackWait + redeliverySlack)
}

// termSources are the consumers this term pulls from: the shared one while earlier
// instances run, else every project's.
func (w *Worker) termSources() []*source {
	if shared := w.shared.Load(); shared != nil && !shared.draining.Load() {
		return []*source{shared}
	}
	return w.sources.list()
}

// readConsumers reads the state of the term's consumers.
func (w *Worker) readConsumers(ctx context.Context) (map[*source]*jetstream.ConsumerInfo, bool) {
	infos := make(map[*source]*jetstream.ConsumerInfo)
	for _, src := range w.termSources() {
		info, ok := w.consumerInfo(ctx, src)
		if !ok {
			return nil, false
		}
		infos[src] = info
	}
	return infos, true
}

// commandsOut counts the commands delivered and not acknowledged.
func commandsOut(infos map[*source]*jetstream.ConsumerInfo) (out int) {
	for _, info := range infos {
		out += info.NumAckPending
	}
	return out
}

// startTerm starts watching src's deliveries from the consumer's state in info, and
// raises its barrier unless the consumer was just made (fresh) and so has nothing out:
// one reading is not enough to call a consumer clear, since its leader may have been
// elected a moment ago and still be applying its log. The barrier ends once a leader
// that answered twice says every command out is here (checkBarrier).
func (w *Worker) startTerm(src *source, info *jetstream.ConsumerInfo, fresh bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	src.watching = true
	src.lastDelivery, src.deliveryKnown = info.Delivered.Consumer, true
	if !fresh {
		w.raiseBarrierLocked(src, consumerLeader(info))
		if info.NumAckPending > 0 {
			w.log.Info("the consumer's new commands wait until those still out are back",
				zap.String("consumer", src.name), zap.Int("out", info.NumAckPending))
		}
	}
}

// noteDeliveryLocked checks that a command delivered from src follows the last one
// this instance got from it. A gap means the consumer delivered commands to another
// client meanwhile (a thawed instance's pull, or a pull's answer lost in a reconnect),
// which will not run them: they come back later, and src's later commands must wait
// for them.
func (w *Worker) noteDeliveryLocked(src *source, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	switch {
	case err != nil:
		src.deliveryKnown = false
	case src.deliveryKnown && meta.Sequence.Consumer == src.lastDelivery+1:
		src.lastDelivery = meta.Sequence.Consumer
		return
	default:
		if w.barriers[src] == nil {
			w.log.Warn("the consumer delivered commands to another instance: its new commands wait until those are back",
				zap.String("consumer", src.name), zap.Uint64("expected_delivery", src.lastDelivery+1), zap.Uint64("delivery", meta.Sequence.Consumer),
				zap.Bool("known", src.deliveryKnown))
			w.raiseBarrierLocked(src, "")
		}
		src.lastDelivery, src.deliveryKnown = meta.Sequence.Consumer, true
	}
}

// raiseBarrierLocked parks src's new commands until those still out are back. Its
// project may hold every command the consumer lets be unacknowledged, and as many
// again as the worker's room: copies of a command (one that came back while held) take
// a place each.
func (w *Worker) raiseBarrierLocked(src *source, leader string) {
	if w.barriers[src] != nil {
		return
	}
	w.barriers[src] = &barrier{leader: leader, checkedAt: w.cfg.Clock.Now()}
	w.room.lift(src.roomKey(), src.get().CachedInfo().Config.MaxAckPending+w.cfg.held())
}

// consumerLeader names the server that answered for the consumer.
func consumerLeader(info *jetstream.ConsumerInfo) string {
	if info.Cluster == nil {
		return "-"
	}
	return info.Cluster.Leader
}

// checkBarriers checks every barrier that is up: the intake loop calls it on its
// timer, so that a barrier ends even when its consumer's pull loop waits for room or
// has stopped (the shared consumer on its way out).
func (w *Worker) checkBarriers(ctx context.Context) {
	w.mu.Lock()
	w.recentlyAcked.age(w.cfg.Clock.Now(), 2*time.Duration(w.ackWait.Load()))
	srcs := make([]*source, 0, len(w.barriers))
	for src := range w.barriers {
		srcs = append(srcs, src)
	}
	w.mu.Unlock()
	for _, src := range srcs {
		w.checkBarrier(ctx, src)
	}
}

// checkBarrier ends src's barrier once every command of it that is not acknowledged is
// held here, and then queues the parked commands in stream order. Commands are counted
// by stream sequence, once each, only above the consumer's ack floor and unless a copy
// of them was acknowledged here (a command may be held twice: it came back while
// held). The consumer is asked at most every takeoverPoll, and its answer counts only
// if the same server answered the time before: a new leader may still be applying its
// log.
func (w *Worker) checkBarrier(ctx context.Context, src *source) {
	w.mu.Lock()
	b := w.barriers[src]
	if b == nil || w.cfg.Clock.Now().Sub(b.checkedAt) < takeoverPoll {
		w.mu.Unlock()
		return
	}
	b.checkedAt = w.cfg.Clock.Now()
	w.mu.Unlock()
	info, ok := w.consumerInfo(ctx, src)
	if !ok {
		return
	}
	w.mu.Lock()
	if w.barriers[src] != b {
		w.mu.Unlock()
		return
	}
	if leader := consumerLeader(info); leader != b.leader {
		b.leader = leader
		w.mu.Unlock()
		return
	}
	held := make(map[uint64]struct{})
	for t := range w.held {
		if t.src == src && t.seq > info.AckFloor.Stream && !t.acked.Load() {
			held[t.seq] = struct{}{}
		}
	}
	if info.NumAckPending > len(held) {
		w.mu.Unlock()
		return
	}
	delete(w.barriers, src)
	parked := b.parked
	slices.SortFunc(parked, func(a, b *task) int { return int64Cmp(a.seq, b.seq) })
	var start []*task
	for _, t := range parked {
		if w.enqueueLocked(t) {
			start = append(start, t)
		}
	}
	w.mu.Unlock()
	w.room.unlift(src.roomKey())
	if len(parked) > 0 || info.NumAckPending > 0 {
		w.log.Info("every command of the consumer is back: running them in stream order", zap.String("consumer", src.name),
			zap.Int("commands", len(parked)))
	}
	for _, t := range start {
		w.ready.push(t)
	}
}

// dropParked forgets the parked commands of a term that ended, handing them back: the
// next active instance gets them.
func (w *Worker) dropParked() { w.unpark(false) }

// unparkForShutdown hands the parked commands back at shutdown, with the others.
func (w *Worker) unparkForShutdown() { w.unpark(true) }

func (w *Worker) unpark(shutdown bool) {
	sources := w.sources.list()
	if shared := w.shared.Load(); shared != nil {
		sources = append(sources, shared)
	}
	w.mu.Lock()
	for _, src := range sources {
		src.watching, src.deliveryKnown = false, false
	}
	var dropped []*task
	for src, b := range w.barriers {
		src.watching, src.deliveryKnown = false, false
		for _, t := range b.parked {
			if shutdown {
				w.handBacks = append(w.handBacks, t)
				t.traceEnd(nil, errHandBack)
			} else {
				dropped = append(dropped, t)
				t.traceEnd(nil, errDropped)
			}
			w.forgetLocked(t)
		}
		delete(w.barriers, src)
		w.room.unlift(src.roomKey())
	}
	w.mu.Unlock()
	for _, t := range dropped { // not under the lock: a Nak may wait for the connection
		w.nakDropped(t)
	}
}

// adoptRecheck is how often an instance that shares the consumer with earlier
// instances asks again whether they are gone.
const adoptRecheck = 15 * time.Second

// earlierInstancesRun asks Config.OlderInstances whether instances of an earlier
// version run, at most every adoptRecheck unless now is set; while any does, the shared
// consumer stays (they pull from it, or would, when they take the lease).
func (w *Worker) earlierInstancesRun(ctx context.Context, now bool) bool {
	if !now && w.cfg.Clock.Now().Before(w.nextAdoptCheck) {
		return w.earlierRun
	}
	w.nextAdoptCheck = w.cfg.Clock.Now().Add(adoptRecheck)
	var older []string
	if w.cfg.OlderInstances != nil {
		var err error
		if older, err = w.cfg.OlderInstances(ctx); err != nil {
			older = []string{"(unknown: " + err.Error() + ")"}
		}
	}
	w.earlierRun = len(older) > 0
	if w.earlierRun && !w.toldOlder {
		w.log.Warn("instances of an earlier apiops-worker version still run: this instance takes commands from the consumer they share, "+
			"until they are stopped (finish the rolling update); then every project gets a consumer of its own",
			zap.Strings("older", older), zap.String("consumer", w.cfg.Consumer))
		w.toldOlder = true
	}
	return w.earlierRun
}

// replaceShared, called while the shared consumer is here, stops pulling from it once no
// earlier instance runs, and deletes it once the commands out on it are done or have
// come back: every project then gets a consumer of its own.
func (w *Worker) replaceShared(ctx context.Context) {
	shared := w.shared.Load()
	if !shared.draining.Load() {
		if w.earlierInstancesRun(ctx, false) {
			return
		}
		w.retireAt = w.cfg.Clock.Now().Add(max(time.Duration(w.ackWait.Load()), w.legacyAckWait) + redeliverySlack)
		shared.draining.Store(true)
		w.log.Info("no earlier instance runs any more: once the commands out on the shared consumer are done, every project gets a consumer of its own",
			zap.String("consumer", shared.name))
	}
	if w.room.holding(shared.roomKey()) > 0 {
		return // ours finish first: acknowledged on the consumer they came from
	}
	info, ok := w.consumerInfo(ctx, shared)
	if !ok || info.NumAckPending > 0 && w.cfg.Clock.Now().Before(w.retireAt) {
		return
	}
	w.deleteShared(ctx, shared)
}

// retireShared deletes the shared consumer at a takeover, once the commands out on it
// are back (none is held here yet) or deadline passed: they were abandoned then, and
// come back to the projects' consumers.
func (w *Worker) retireShared(ctx context.Context, shared *source, deadline time.Time) bool {
	shared.draining.Store(true)
	for {
		info, ok := w.consumerInfo(ctx, shared)
		if !ok {
			return false
		}
		if info.NumAckPending == 0 || !w.cfg.Clock.Now().Before(deadline) {
			break
		}
		select {
		case <-w.cfg.Clock.After(min(takeoverPoll, deadline.Sub(w.cfg.Clock.Now()))):
		case <-ctx.Done():
			return false
		}
	}
	return w.deleteShared(ctx, shared)
}

func (w *Worker) deleteShared(ctx context.Context, shared *source) bool {
	err := w.js.DeleteConsumer(ctx, w.cfg.CommandStream, shared.name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		w.log.Warn("cannot delete the shared consumer yet; trying again", zap.String("consumer", shared.name), zap.Error(err))
		return false
	}
	w.shared.CompareAndSwap(shared, nil)
	w.legacyAckWait = 0
	w.log.Info("the shared consumer is deleted: every project gets a consumer of its own", zap.String("consumer", shared.name))
	return true
}

// consumerInfo asks for a consumer's state until the server answers or ctx ends,
// setting the consumer up again if it is gone.
func (w *Worker) consumerInfo(ctx context.Context, src *source) (*jetstream.ConsumerInfo, bool) {
	last := ""
	for ctx.Err() == nil {
		info, err := src.get().Info(ctx)
		if err == nil {
			return info, true
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			w.log.Error("a consumer is gone; setting it up again", zap.String("consumer", src.name))
			w.rebind(ctx, src)
			if src.project == "" {
				return &jetstream.ConsumerInfo{}, true // the shared one: nothing is out on it any more
			}
			continue
		}
		if err.Error() != last {
			w.log.Warn("cannot read a consumer's state; retrying", zap.String("consumer", src.name), zap.Error(err))
			last = err.Error()
		}
		select {
		case <-w.cfg.Clock.After(takeoverPoll):
		case <-ctx.Done():
		}
	}
	return nil, false
}

// persist runs fn until it succeeds or ctx ends, logging each new problem once.
func (w *Worker) persist(ctx context.Context, what string, fn func(context.Context) error) bool {
	last := ""
	for ctx.Err() == nil {
		err := fn(ctx)
		if err == nil {
			return true
		}
		if err.Error() != last {
			w.log.Warn("cannot "+what+"; retrying", zap.Error(err))
			last = err.Error()
		}
		select {
		case <-w.cfg.Clock.After(takeoverPoll):
		case <-ctx.Done():
		}
	}
	return false
}
