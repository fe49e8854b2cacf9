package worker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// store remembers, in a JetStream key-value bucket whose TTL is the idempotency window,
// the result of every finished id and the attempts of commands being retried, so that
// both survive redeliveries and restarts.
type store struct {
	kv  jetstream.KeyValue
	log *zap.Logger
}

// finished is what the store keeps of a finished command.
type finished struct {
	// Seq is the command's stream sequence: a redelivery of that very message (the
	// worker stopped between storing and acknowledging) must finish publishing; a new
	// message with the same id must not publish again.
	Seq    uint64          `json:"seq"`
	Result json.RawMessage `json:"result"`
}

// attempts counts a command's APIOps requests: all of them, and those charged to its
// retry budget.
type attempts struct {
	Requests int `json:"requests"`
	Charged  int `json:"charged"`
}

// Command ids may hold ':' which keys may not; base64url maps ids to valid keys
// one-to-one.
func resultKey(id string) string { return "result." + base64.RawURLEncoding.EncodeToString([]byte(id)) }
func attemptsKey(id string) string {
	return "attempts." + base64.RawURLEncoding.EncodeToString([]byte(id))
}

func (s *store) finished(ctx context.Context, id string) (*finished, error) {
	var f finished
	ok, err := s.get(ctx, resultKey(id), &f)
	if !ok || err != nil {
		return nil, err
	}
	if len(f.Result) == 0 {
		s.log.Warn("ignoring a record without a result in the idempotency bucket", zap.String("id", id))
		return nil, nil
	}
	return &f, nil
}

// finishOnce stores f as id's outcome unless one is stored already, and returns the
// stored one: two deliveries of an id (published twice, or an ack lost while another
// instance ran it) cannot overwrite each other's outcome.
func (s *store) finishOnce(ctx context.Context, id string, f finished) (*finished, error) {
	data, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	_, err = s.kv.Create(ctx, resultKey(id), data)
	if err == nil {
		return &f, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("store the outcome of %s: %w", id, err)
	}
	stored, err := s.finished(ctx, id)
	if err != nil || stored != nil {
		return stored, err
	}
	// The stored record is unreadable: replace it.
	return &f, s.put(ctx, resultKey(id), f)
}

func (s *store) attempts(ctx context.Context, id string) (attempts, error) {
	var a attempts
	_, err := s.get(ctx, attemptsKey(id), &a)
	return a, err
}

func (s *store) saveAttempts(ctx context.Context, id string, a attempts) error {
	return s.put(ctx, attemptsKey(id), a)
}

func (s *store) get(ctx context.Context, key string, v any) (bool, error) {
	entry, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s from the idempotency bucket: %w", key, err)
	}
	if err := json.Unmarshal(entry.Value(), v); err != nil {
		// Not the worker's record: ignoring it is better than stopping the command.
		s.log.Warn("ignoring an unreadable record in the idempotency bucket", zap.String("key", key), zap.Error(err))
		return false, nil
	}
	return true, nil
}

func (s *store) put(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("store %s in the idempotency bucket: %w", key, err)
	}
	return nil
}
