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
// active instance.
type barrier struct {
	// delivered is the consumer's last delivered stream sequence at takeover: commands
	// above it are new, not the previous instance's.
	delivered uint64
	parked    []*task
}

const (
	// takeoverPoll is how often a new active instance looks at the consumer while it
	// waits for the previous one's commands.
	takeoverPoll = 250 * time.Millisecond
	// redeliverySlack covers the server's timer for expired acknowledgements.
	redeliverySlack = time.Second
	// adoptQuiet is how many looks, takeoverPoll×2 apart, must see no pull requests
	// but this instance's before it takes over a consumer older instances may use.
	adoptQuiet = 5
)

// fleetMetadata marks a consumer set up by instances that use the lease. One without
// it may still be pulled from by older instances, which do not.
const fleetMetadata = "apiops-worker.fleet"

// takeOver prepares a new term: it adopts a consumer that older instances may still
// use, waits out the commands a vanished predecessor held, and parks new commands
// until those are back. It returns false when ctx ends first.
func (w *Worker) takeOver(ctx context.Context, t *term) bool {
	if w.legacyConsumer.Load() && !w.adoptConsumer(ctx) {
		return false
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
	w.mu.Lock()
	w.barrier = &barrier{delivered: info.Delivered.Stream}
	w.mu.Unlock()
	w.log.Info("taking over: new commands wait until those still out are back", zap.Int("out", info.NumAckPending))
	return true
}

// checkBarrier ends the barrier once every unacknowledged command is held here, and
// then queues the parked commands in stream order. When the parked commands fill the
// room while others are still out, it hands the new ones back, in order, to make room
// for those.
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
	out := info.NumAckPending - len(w.held)
	if out > 0 {
		var back []*task
		if len(w.held) == cap(w.slots) {
			back = w.unparkNewLocked(b)
		}
		w.mu.Unlock()
		for _, t := range back { // in stream order: the server redelivers first come, first served
			if err := t.msg.Nak(); err != nil {
				w.log.Warn("handing a command back", zap.String("id", t.cmd.ID), zap.Error(err))
			}
		}
		if len(back) > 0 {
			w.log.Info("taking over: no room for the commands still out; handed new ones back", zap.Int("handed_back", len(back)), zap.Int("out", out))
		}
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
	w.log.Info("took over: every command is back; running them in stream order", zap.Int("commands", len(parked)))
	for _, t := range start {
		w.ready <- t
	}
}

// unparkNewLocked removes the parked commands that were new at takeover and frees
// their room; the caller hands them back.
func (w *Worker) unparkNewLocked(b *barrier) []*task {
	var back, keep []*task
	for _, t := range b.parked {
		if t.seq > b.delivered {
			back = append(back, t)
			w.forgetLocked(t)
		} else {
			keep = append(keep, t)
		}
	}
	b.parked = keep
	slices.SortFunc(back, func(a, b *task) int { return int64Cmp(a.seq, b.seq) })
	return back
}

// dropParked forgets the parked commands of a term that ended: the next active
// instance gets them.
func (w *Worker) dropParked() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.barrier == nil {
		return
	}
	for _, t := range w.barrier.parked {
		w.forgetLocked(t)
	}
	w.barrier = nil
}

// adoptConsumer takes over a consumer that instances older than the lease may still
// pull from: it waits, logging once, until no pull requests but its own are seen, then
// marks the consumer and gives it this version's AckWait. Older instances keep their
// own AckWait until then, so none of their commands is redelivered under them.
func (w *Worker) adoptConsumer(ctx context.Context) bool {
	quiet, told := 0, false
	for quiet < adoptQuiet {
		info, ok := w.consumerInfo(ctx)
		if !ok {
			return false
		}
		if info.NumWaiting > 0 {
			quiet = 0
			if !told {
				w.log.Warn("older apiops-worker instances, which do not use the lease, still pull from the consumer: stop them "+
					"(finish the rolling update); this instance takes the commands once they are gone", zap.String("consumer", w.cfg.Consumer))
				told = true
			}
		} else {
			quiet++
		}
		select {
		case <-w.cfg.Clock.After(2 * takeoverPoll):
		case <-ctx.Done():
			return false
		}
	}
	w.legacyAckWait = time.Duration(w.ackWait.Load())
	if w.cfg.ManageStreams {
		for {
			err := w.updateConsumer(ctx)
			if err == nil {
				break
			}
			w.log.Warn("cannot update the consumer; retrying", zap.Error(err))
			select {
			case <-w.cfg.Clock.After(w.cfg.RetryInitial):
			case <-ctx.Done():
				return false
			}
		}
	}
	w.legacyConsumer.Store(false)
	w.log.Info("no older instances pull from the consumer any more: it is this version's now", zap.String("consumer", w.cfg.Consumer))
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
