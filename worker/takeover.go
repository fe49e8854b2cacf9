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
// starts no command until every command the previous one held is in its own hands, and
// then runs them in stream order. See docs/design/fleet.md.

// barrier parks the commands delivered while others are still out with the previous
// active instance. Meanwhile the instance may hold as many commands as the consumer
// lets be unacknowledged: every command out fits, and the server redelivers commands
// even at that limit, so the barrier always ends once they are back.
type barrier struct {
	parked []*task
}

const (
	// takeoverPoll is how often a new active instance looks at the consumer while it
	// waits for the previous one's commands.
	takeoverPoll = 250 * time.Millisecond
	// redeliverySlack covers the server's timer for expired acknowledgements.
	redeliverySlack = time.Second
)

// fleetMetadata marks a consumer set up by instances that use the lease. One without
// it may still be pulled from by older instances, which do not.
const fleetMetadata = "apiops-worker.fleet"

// takeOver prepares a new term: it adopts a consumer that older instances may still
// use, waits out the commands a vanished predecessor held, and parks new commands
// until those are back. It returns false when ctx ends first.
func (w *Worker) takeOver(ctx context.Context, t *term) bool {
	if w.legacyConsumer.Load() && !w.adoptConsumer(ctx) {
		return true // older instances still take commands too: nothing to wait for
	}
	info, ok := w.consumerInfo(ctx)
	if !ok {
		return false
	}
	if info.NumAckPending == 0 {
		return true
	}
	if !t.clean {
		ackWait := max(time.Duration(w.ackWait.Load()), w.legacyAckWait)
		deadline := t.lastSeen.Add(w.lease.fenceAfter() + pullWait + ackWait + redeliverySlack)
		w.log.Info("waiting for the commands the previous instance held to come back", zap.Int("commands", info.NumAckPending),
			zap.Duration("at_most", deadline.Sub(w.cfg.Clock.Now())))
		for w.cfg.Clock.Now().Before(deadline) && info.NumAckPending > 0 {
			select {
			case <-w.cfg.Clock.After(min(takeoverPoll, deadline.Sub(w.cfg.Clock.Now()))):
			case <-ctx.Done():
				return false
			}
			if info, ok = w.consumerInfo(ctx); !ok {
				return false
			}
		}
		if info.NumAckPending == 0 {
			return true
		}
	}
	w.raiseBarrier(info)
	return true
}

// raiseBarrier parks new commands until those still out are back.
func (w *Worker) raiseBarrier(info *jetstream.ConsumerInfo) {
	w.mu.Lock()
	w.barrier = &barrier{}
	w.mu.Unlock()
	w.room.setLimit(max(w.cfg.held(), info.Config.MaxAckPending))
	w.log.Info("taking over: new commands wait until those still out are back", zap.Int("out", info.NumAckPending))
}

// adoptLater adopts the consumer once older instances that shared it are gone, and
// then parks new commands until those they left are back.
func (w *Worker) adoptLater(ctx context.Context) {
	if !w.legacyConsumer.Load() || !w.adoptConsumer(ctx) {
		return
	}
	if info, ok := w.consumerInfo(ctx); ok && info.NumAckPending > 0 {
		w.raiseBarrier(info)
	}
}

// checkBarrier ends the barrier once every unacknowledged command is held here, and
// then queues the parked commands in stream order. Commands are counted by stream
// sequence, once each, and only above the ack floor: a command may be held twice (it
// came back while held), or acknowledged late by the previous instance.
func (w *Worker) checkBarrier(ctx context.Context) {
	w.mu.Lock()
	b := w.barrier
	w.mu.Unlock()
	if b == nil {
		return
	}
	info, ok := w.consumerInfo(ctx)
	if !ok {
		return
	}
	w.mu.Lock()
	held := make(map[uint64]struct{}, len(w.held))
	for t := range w.held {
		if t.seq > info.AckFloor.Stream {
			held[t.seq] = struct{}{}
		}
	}
	if out := info.NumAckPending - len(held); out > 0 {
		w.mu.Unlock()
		return
	}
	w.barrier = nil
	parked := b.parked
	slices.SortFunc(parked, func(a, b *task) int { return int64Cmp(a.seq, b.seq) })
	var start []*task
	for _, t := range parked {
		if w.enqueueLocked(t) {
			start = append(start, t)
		}
	}
	w.mu.Unlock()
	w.room.setLimit(w.cfg.held())
	w.log.Info("took over: every command is back; running them in stream order", zap.Int("commands", len(parked)))
	for _, t := range start {
		w.ready <- t
	}
}

// dropParked forgets the parked commands of a term that ended: the next active
// instance gets them.
func (w *Worker) dropParked() { w.unpark(false) }

// unparkForShutdown hands the parked commands back at shutdown, with the others.
func (w *Worker) unparkForShutdown() { w.unpark(true) }

func (w *Worker) unpark(handBack bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.barrier == nil {
		return
	}
	for _, t := range w.barrier.parked {
		if handBack {
			w.handBacks = append(w.handBacks, t)
			t.traceEnd(nil, errHandBack)
		} else {
			t.traceEnd(nil, errDropped)
		}
		w.forgetLocked(t)
	}
	w.barrier = nil
	w.room.setLimit(w.cfg.held())
}

// adoptRecheck is how often an instance that shares the consumer with older
// instances asks again whether they are gone.
const adoptRecheck = 15 * time.Second

// adoptConsumer takes over a consumer that instances older than the lease may still
// pull from, once Config.OlderInstances says none runs: it gives the consumer this
// version's marker and AckWait. While older instances run, this instance takes
// commands alongside them with the consumer as it is, their AckWait included, so that
// none of their commands is redelivered under them; it logs that once and asks again
// every adoptRecheck. It reports whether the consumer is adopted.
func (w *Worker) adoptConsumer(ctx context.Context) bool {
	if w.cfg.Clock.Now().Before(w.nextAdoptCheck) {
		return false
	}
	w.nextAdoptCheck = w.cfg.Clock.Now().Add(adoptRecheck)
	var older []string
	if w.cfg.OlderInstances != nil {
		var err error
		if older, err = w.cfg.OlderInstances(ctx); err != nil {
			older = []string{"(unknown: " + err.Error() + ")"}
		}
	}
	if len(older) > 0 {
		if !w.toldOlder {
			w.log.Warn("older apiops-worker instances, which do not use the lease, still run: this instance takes commands alongside them, "+
				"with the consumer unchanged, until they are stopped (finish the rolling update); order across instances holds from then on",
				zap.Strings("older", older), zap.String("consumer", w.cfg.Consumer))
			w.toldOlder = true
		}
		return false
	}
	w.legacyAckWait = time.Duration(w.ackWait.Load())
	if w.cfg.ManageStreams {
		if err := w.updateConsumer(ctx); err != nil {
			w.log.Warn("cannot update the consumer; trying again later", zap.Error(err))
			return false
		}
	}
	w.legacyConsumer.Store(false)
	w.log.Info("no older instance runs any more: the consumer is this version's now", zap.String("consumer", w.cfg.Consumer))
	return true
}

// consumerInfo asks for the consumer's state until the server answers or ctx ends,
// setting the consumer up again if it is gone.
func (w *Worker) consumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, bool) {
	last := ""
	for ctx.Err() == nil {
		if !w.bound.Load() {
			w.rebind(ctx)
			continue
		}
		info, err := (*w.consumer.Load()).Info(ctx)
		if err == nil {
			return info, true
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			w.log.Error("the consumer is gone; setting it up again", zap.String("consumer", w.cfg.Consumer))
			w.bound.Store(false)
			continue
		}
		if err.Error() != last {
			w.log.Warn("cannot read the consumer's state; retrying", zap.Error(err))
			last = err.Error()
		}
		select {
		case <-w.cfg.Clock.After(takeoverPoll):
		case <-ctx.Done():
		}
	}
	return nil, false
}
