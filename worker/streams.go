package worker

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Setup creates or updates the streams, the idempotency bucket and the consumer (when
// ManageStreams is set), or binds to them as an operator made them. Run calls it when
// it has not been called.
func (w *Worker) Setup(ctx context.Context) error {
	kv, err := w.setupStreams(ctx)
	if err != nil {
		return err
	}
	stream, err := w.js.Stream(ctx, "KV_"+w.cfg.IdempotencyBucket)
	if err != nil {
		return fmt.Errorf("key-value bucket %s: %w", w.cfg.IdempotencyBucket, err)
	}
	w.store = &store{kv: kv, stream: stream, bucket: w.cfg.IdempotencyBucket, log: w.log, clock: w.cfg.Clock}
	if err := w.store.detectLegacy(ctx); err != nil {
		return err
	}
	return w.setupConsumer(ctx)
}

func (w *Worker) setupStreams(ctx context.Context) (jetstream.KeyValue, error) {
	cfg := w.cfg
	streams := []jetstream.StreamConfig{{
		Name:        cfg.CommandStream,
		Description: "apiops-worker commands",
		Subjects:    []string{w.subjects.AllCommands()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  duplicateWindow,
		Replicas:    cfg.Replicas,
	}, {
		Name:        cfg.ResultStream,
		Description: "apiops-worker results",
		Subjects:    []string{w.subjects.AllResults()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.ResultMaxAge,
		Duplicates:  duplicateWindow,
		Replicas:    cfg.Replicas,
	}, {
		Name:        cfg.DeadStream,
		Description: "apiops-worker dead letters (secrets redacted)",
		Subjects:    []string{w.subjects.AllDeadLetters()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      cfg.DeadMaxAge,
		Duplicates:  duplicateWindow,
		Replicas:    cfg.Replicas,
	}}
	if !cfg.ManageStreams {
		for _, sc := range streams {
			if _, err := w.js.Stream(ctx, sc.Name); err != nil {
				return nil, fmt.Errorf("stream %s (managed by an operator): %w", sc.Name, err)
			}
		}
		kv, err := w.js.KeyValue(ctx, cfg.IdempotencyBucket)
		if err != nil {
			return nil, fmt.Errorf("key-value bucket %s (managed by an operator): %w", cfg.IdempotencyBucket, err)
		}
		return kv, nil
	}
	for _, sc := range streams {
		if _, err := w.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("create or update stream %s: %w", sc.Name, err)
		}
	}
	kv, err := w.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.IdempotencyBucket,
		Description: "apiops-worker: results of finished command ids, attempts of retried ones",
		History:     1,
		TTL:         cfg.IdempotencyWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update key-value bucket %s: %w", cfg.IdempotencyBucket, err)
	}
	return kv, nil
}

// setupConsumer creates (or binds) the consumer and publishes it to the pull loop and
// Pending, which may run meanwhile.
func (w *Worker) setupConsumer(ctx context.Context) error {
	cfg := w.cfg
	var (
		consumer jetstream.Consumer
		err      error
	)
	if cfg.ManageStreams {
		consumer, err = w.js.CreateOrUpdateConsumer(ctx, cfg.CommandStream, jetstream.ConsumerConfig{
			Durable:       cfg.Consumer,
			Description:   "apiops-worker instances share this consumer",
			FilterSubject: w.subjects.AllCommands(),
			AckPolicy:     jetstream.AckExplicitPolicy,
			// No BackOff: it would silently replace AckWait with its first entry. The
			// worker paces retries itself and keeps held commands alive with InProgress.
			AckWait:       cfg.AckWait,
			MaxDeliver:    -1, // a command is never dropped for being redelivered often
			MaxAckPending: maxAckPending,
			Replicas:      cfg.Replicas,
		})
		if err != nil {
			return fmt.Errorf("create or update consumer %s on %s: %w", cfg.Consumer, cfg.CommandStream, err)
		}
	} else if consumer, err = w.js.Consumer(ctx, cfg.CommandStream, cfg.Consumer); err != nil {
		return fmt.Errorf("consumer %s on %s (managed by an operator): %w", cfg.Consumer, cfg.CommandStream, err)
	}
	ackWait := cfg.AckWait
	if info := consumer.CachedInfo(); info != nil {
		if info.Config.AckWait > 0 {
			ackWait = info.Config.AckWait
		}
		if len(info.Config.BackOff) > 0 {
			// BackOff replaces AckWait with its first entry.
			w.log.Warn("the consumer has a BackOff; the worker paces retries itself and keeps commands alive within its first entry",
				zap.Durations("backoff", info.Config.BackOff))
			ackWait = min(ackWait, info.Config.BackOff[0])
		}
	}
	w.ackWait.Store(int64(ackWait))
	w.consumer.Store(&consumer)
	w.bound.Store(true)
	return nil
}
