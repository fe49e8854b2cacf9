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

// Backlog asks the server for the consumer's backlog. The command stream is a work
// queue, so its first message is the oldest command not yet acknowledged. It fails
// while the consumer is not bound (before setup, or while NATS is unreachable).
func (w *Worker) Backlog(ctx context.Context) (Backlog, error) {
	if !w.bound.Load() {
		return Backlog{}, errors.New("consumer not bound")
	}
	info, err := (*w.consumer.Load()).Info(ctx)
	if err != nil {
		return Backlog{}, fmt.Errorf("consumer info: %w", err)
	}
	b := Backlog{Pending: info.NumPending, AckPending: uint64(info.NumAckPending)}
	if b.Pending+b.AckPending == 0 {
		return b, nil
	}
	stream, err := w.js.Stream(ctx, w.cfg.CommandStream)
	switch {
	case err != nil, stream.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy:
		b.OldestUnknown = true
	case stream.CachedInfo().State.Msgs > 0:
		b.Oldest = stream.CachedInfo().State.FirstTime
	}
	return b, nil
}
