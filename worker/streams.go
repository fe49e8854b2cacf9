package worker

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Per-subject limits: a subject is one project's commands, results or dead letters of
// one type, so one project's flood fills its own subjects first. A project's command
// backlog of one type is bounded, new commands refused beyond it (the publisher is
// told); results and dead letters keep each subject's latest.
const (
	maxCommandsPerSubject    = 10_000
	maxResultsPerSubject     = 100_000
	maxDeadLettersPerSubject = 1_000
)

// streamConfigs are the streams the worker makes: commands, results, dead letters.
func (w *Worker) streamConfigs() []jetstream.StreamConfig {
	cfg := w.cfg
	return []jetstream.StreamConfig{{
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

}

// setupStreams makes or updates the streams and the bucket, or, when an operator
// manages them, checks that they are there.
func (w *Worker) setupStreams(ctx context.Context) (jetstream.KeyValue, error) {
	cfg := w.cfg
	streams := w.streamConfigs()
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
