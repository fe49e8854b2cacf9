// Package jsread reads what an ordered consumer has pending, as it is now: the reads
// of apiopsctl's tables (dead letters, expiry) of a stream.
package jsread

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Pending passes each message c has pending when Pending starts to each, in order,
// fetching in batches; it stops at each's first error. A fetch that delivers nothing
// within 5 s is an error: the stream did not deliver what it said it holds.
func Pending(ctx context.Context, c jetstream.Consumer, each func(m jetstream.Msg, meta *jetstream.MsgMetadata) error) error {
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	for remaining := info.NumPending; remaining > 0; {
		batch, err := c.Fetch(int(min(remaining, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			remaining = meta.NumPending
			if err := each(m, meta); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if got == 0 {
			return errors.New("the stream did not deliver them in time")
		}
	}
	return nil
}
