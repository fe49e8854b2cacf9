package worker

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Setup creates or updates the streams and the idempotency bucket (when ManageStreams
// is set), or binds to them as an operator made them, and binds the consumers there
// are; the active instance makes the projects' consumers as projects appear (intake.go).
// Run calls it when it has not been called.
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
	if err := w.loadSources(ctx); err != nil {
		return err
	}
	if w.cfg.DigestKeys == nil {
		key, err := st.loadBucketDigestKey(ctx)
		if err != nil {
			return err
		}
		if key != nil {
			w.bucketKey.Store(&key)
		}
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
