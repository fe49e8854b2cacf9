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
	st := &store{kv: kv, stream: stream, bucket: w.cfg.IdempotencyBucket, log: w.log, clock: w.cfg.Clock,
		lookups: make(chan *lookup)}
	if err := st.detectLegacy(ctx); err != nil {
		return err
	}
	if err := w.setupConsumer(ctx); err != nil {
		return err
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
	w.lease.setBucket(kv)
	return nil
}

// Per-subject limits: a subject is one project's commands, results or dead letters of
// one type, so one project's flood fills its own subjects first. A project's command
// backlog of one type is bounded, new commands refused beyond it (the publisher is
// told); results and dead letters keep each subject's latest.
const (
	maxCommandsPerSubject    = 10_000
	maxResultsPerSubject     = 100_000
	maxDeadLettersPerSubject = 1_000
)

func (w *Worker) setupStreams(ctx context.Context) (jetstream.KeyValue, error) {
	cfg := w.cfg
	streams := []jetstream.StreamConfig{{
		Name:                 cfg.CommandStream,
		Description:          "apiops-worker commands",
		Subjects:             []string{w.subjects.AllCommands()},
		Retention:            jetstream.WorkQueuePolicy,
		Storage:              jetstream.FileStorage,
		Duplicates:           duplicateWindow,
		Replicas:             cfg.Replicas,
		MaxMsgSize:           cfg.MaxCommandSize,
		MaxBytes:             cfg.StreamMaxBytes,
		MaxMsgsPerSubject:    maxCommandsPerSubject,
		Discard:              jetstream.DiscardNew, // a command is refused, never dropped once stored
		DiscardNewPerSubject: true,
	}, {
		Name:              cfg.ResultStream,
		Description:       "apiops-worker results",
		Subjects:          []string{w.subjects.AllResults()},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		MaxAge:            cfg.ResultMaxAge,
		Duplicates:        duplicateWindow,
		Replicas:          cfg.Replicas,
		MaxBytes:          cfg.StreamMaxBytes,
		MaxMsgsPerSubject: maxResultsPerSubject,
	}, {
		Name:              cfg.DeadStream,
		Description:       "apiops-worker dead letters (secrets redacted)",
		Subjects:          []string{w.subjects.AllDeadLetters()},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		MaxAge:            cfg.DeadMaxAge,
		Duplicates:        duplicateWindow,
		Replicas:          cfg.Replicas,
		MaxBytes:          cfg.StreamMaxBytes,
		MaxMsgsPerSubject: maxDeadLettersPerSubject,
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
		Description: "apiops-worker: outcomes of finished commands, attempts of retried ones, the lease of the active instance",
		History:     1,
		TTL:         cfg.IdempotencyWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxBytes:    cfg.StreamMaxBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update key-value bucket %s: %w", cfg.IdempotencyBucket, err)
	}
	return kv, nil
}

// consumerConfig is the consumer as this version sets it up.
func (w *Worker) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       w.cfg.Consumer,
		Description:   "apiops-worker: one instance at a time, the lease holder, takes commands",
		FilterSubject: w.subjects.AllCommands(),
		AckPolicy:     jetstream.AckExplicitPolicy,
		// No BackOff: it would silently replace AckWait with its first entry. The
		// worker paces retries itself and keeps held commands alive with InProgress.
		AckWait:       w.cfg.AckWait,
		MaxDeliver:    -1, // a command is never dropped for being redelivered often
		MaxAckPending: w.cfg.maxAckPending(),
		Replicas:      w.cfg.Replicas,
		Metadata:      map[string]string{fleetMetadata: "lease"},
	}
}

// setupConsumer creates (or binds) the consumer and publishes it to the pull loop and
// Pending, which may run meanwhile. A consumer that older instances set up, without the
// fleet marker, is bound as it is: they may still pull from it, with their AckWait, and
// the first active instance adopts it once they are gone (see adoptConsumer).
func (w *Worker) setupConsumer(ctx context.Context) error {
	cfg := w.cfg
	consumer, err := w.js.Consumer(ctx, cfg.CommandStream, cfg.Consumer)
	switch {
	case err == nil && consumer.CachedInfo().Config.Metadata[fleetMetadata] == "":
		if !w.legacyConsumer.Swap(true) {
			w.log.Info("the consumer was set up by an older version; this instance adopts it when it is active and no older instance pulls from it",
				zap.String("consumer", cfg.Consumer))
		}
	case cfg.ManageStreams:
		if consumer, err = w.js.CreateOrUpdateConsumer(ctx, cfg.CommandStream, w.consumerConfig()); err != nil {
			return fmt.Errorf("create or update consumer %s on %s: %w", cfg.Consumer, cfg.CommandStream, err)
		}
		w.legacyConsumer.Store(false)
	case err != nil:
		return fmt.Errorf("consumer %s on %s (managed by an operator): %w", cfg.Consumer, cfg.CommandStream, err)
	}
	w.bind(consumer)
	return nil
}

// updateConsumer gives an adopted consumer this version's configuration.
func (w *Worker) updateConsumer(ctx context.Context) error {
	consumer, err := w.js.CreateOrUpdateConsumer(ctx, w.cfg.CommandStream, w.consumerConfig())
	if err != nil {
		return fmt.Errorf("update consumer %s on %s: %w", w.cfg.Consumer, w.cfg.CommandStream, err)
	}
	w.bind(consumer)
	return nil
}

func (w *Worker) bind(consumer jetstream.Consumer) {
	ackWait := w.cfg.AckWait
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
}
