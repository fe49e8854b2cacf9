package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Backlog is what waits for the fleet in the command stream.
type Backlog struct {
	// Pending commands have not been delivered yet; AckPending were delivered and are
	// not finished (held by an instance, or waiting for redelivery).
	Pending, AckPending uint64
	// Oldest is when the oldest unfinished command was stored; zero when none waits.
	Oldest time.Time
	// OldestUnknown: the stream could not be read, or is not a work queue (an
	// operator's), so its first message may be one finished long ago.
	OldestUnknown bool
}

// Backlog asks the server for the fleet's backlog: the command stream's messages, of
// which the consumers' unacknowledged ones were delivered. The command stream is a work
// queue, so it holds only commands not yet acknowledged, and its first message is the
// oldest. It fails before set-up, or while NATS is unreachable.
func (w *Worker) Backlog(ctx context.Context) (Backlog, error) {
	if !w.bound.Load() {
		return Backlog{}, errors.New("the consumers are not read yet")
	}
	stream, err := w.js.Stream(ctx, w.cfg.CommandStream)
	if err != nil {
		return Backlog{}, fmt.Errorf("stream info: %w", err)
	}
	var b Backlog
	sources := w.sources.list()
	if shared := w.shared.Load(); shared != nil {
		sources = append(sources, shared)
	}
	for _, src := range sources {
		info, err := src.get().Info(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return Backlog{}, fmt.Errorf("consumer info: %w", err)
		}
		if err == nil {
			b.AckPending += uint64(info.NumAckPending)
		}
	}
	state := stream.CachedInfo().State
	b.Pending = state.Msgs - min(state.Msgs, b.AckPending)
	switch {
	case stream.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy:
		b.OldestUnknown = true
	case state.Msgs > 0:
		b.Oldest = state.FirstTime
	}
	return b, nil
}
