package worker

import (
	"context"
	"errors"
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
		w.sched.watch(src, info, false)
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

// checkBarriers checks every barrier that is up: the intake loop calls it on its
// timer, so that a barrier ends even when its consumer's pull loop waits for room or
// has stopped (the shared consumer on its way out).
func (w *Worker) checkBarriers(ctx context.Context) {
	for _, src := range w.sched.barrierSources(2 * time.Duration(w.ackWait.Load())) {
		w.checkBarrier(ctx, src)
	}
}

// checkBarrier asks src's consumer, at most every takeoverPoll, whether every command
// of it that is not acknowledged is held here, and ends src's barrier if so
// (scheduler.endBarrier says how the answer is read).
func (w *Worker) checkBarrier(ctx context.Context, src *source) {
	b := w.sched.barrierDue(src, takeoverPoll)
	if b == nil {
		return
	}
	if info, ok := w.consumerInfo(ctx, src); ok {
		w.sched.endBarrier(src, b, info)
	}
}

// dropParked forgets the parked commands of a term that ended, handing them back: the
// next active instance gets them.
func (w *Worker) dropParked() {
	for _, t := range w.sched.unpark(false) { // not under the scheduler's lock: a Nak may wait for the connection
		w.sched.nakDropped(t)
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
