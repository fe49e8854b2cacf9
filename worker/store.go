package worker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/messages"
)

// store remembers, in a JetStream key-value bucket whose TTL is the idempotency window,
// the result of every finished command and the attempts of commands being retried, so
// that both survive redeliveries and restarts. A command is known by its project and
// id: the same id in two projects is two commands. See docs/design/idempotency.md.
type store struct {
	kv       jetstream.KeyValue
	stream   jetstream.Stream // the bucket's stream, for the legacy check
	bucket   string
	lookups  chan *lookup // to runLookups
	batchGet *batchGetter
	log      *zap.Logger
	clock    Clock

	legacy        atomic.Bool  // records from before project-scoped ids may exist
	legacyChecked atomic.Int64 // unix nanoseconds of the last check
}

// finished is what the store keeps of a finished command.
type finished struct {
	// Seq is the command's stream sequence: a redelivery of that very message (the
	// worker stopped between storing and acknowledging) must finish publishing; a new
	// message with the same id must not publish again.
	Seq    uint64          `json:"seq"`
	Result json.RawMessage `json:"result"`
	// Params is the command's fingerprint, and DigestKey the id of the key its secrets
	// were digested with: an id published again with other params is refused (see
	// fingerprint.go). Both are absent in records of older workers, which are honoured
	// as they were; a fingerprint names its version (messages.Fingerprint).
	Params    messages.Fingerprint `json:"fingerprint,omitempty"`
	DigestKey string               `json:"digestKey,omitempty"`
	// legacy: stored by a worker from before project-scoped ids, whose results
	// carried the bare id as Nats-Msg-Id.
	legacy bool
}

// encode is f's stored form, built around the result's JSON as it is: the result was
// just encoded, and re-encoding it as a json.RawMessage would validate and compact it
// again.
func (f finished) encode() []byte {
	data := make([]byte, 0, len(f.Result)+32)
	data = append(data, `{"seq":`...)
	data = strconv.AppendUint(data, f.Seq, 10)
	data = append(data, `,"result":`...)
	data = append(data, f.Result...)
	if f.Params != nil {
		params, _ := json.Marshal(f.Params) // a map of strings always encodes
		data = append(data, `,"fingerprint":`...)
		data = append(data, params...)
	}
	if f.DigestKey != "" {
		id, _ := json.Marshal(f.DigestKey)
		data = append(data, `,"digestKey":`...)
		data = append(data, id...)
	}
	return append(data, '}')
}

// attempts counts a command's APIOps requests: all of them, and those charged to its
// retry budget.
type attempts struct {
	Requests int `json:"requests"`
	Charged  int `json:"charged"`
}

// commandKey is a command's identity, its project and id. Both may hold characters
// that keys may not; base64url maps each to a valid token one-to-one.
type commandKey struct{ project, id string }

func (k commandKey) String() string { return messages.MsgID(k.project, k.id) }

func (k commandKey) tokens() string {
	return base64.RawURLEncoding.EncodeToString([]byte(k.project)) + "." + base64.RawURLEncoding.EncodeToString([]byte(k.id))
}

func resultKey(k commandKey) string   { return "result." + k.tokens() }
func attemptsKey(k commandKey) string { return "attempts." + k.tokens() }

// messageResultKey keeps the outcome of one message whose id another command of
// another type holds (see finish).
func messageResultKey(k commandKey, seq uint64) string {
	return resultKey(k) + "." + strconv.FormatUint(seq, 10)
}

// legacyResultKey is where workers before project-scoped ids stored an id's result.
func legacyResultKey(id string) string {
	return "result." + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// legacyResultKeys matches every legacy result key and no current one.
const legacyResultKeys = "result.*"

// legacyRecheck is how often the worker looks again for legacy records: older workers
// may still write them during a rolling upgrade, and they expire after the window.
const legacyRecheck = time.Minute

// detectLegacy makes lookups also read legacy records while any may exist: a command
// that an older worker finished must not be executed again during a rolling upgrade.
// One message is read, the first under a legacy key, whatever the bucket's size.
func (s *store) detectLegacy(ctx context.Context) error {
	_, err := s.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject("$KV."+s.bucket+"."+legacyResultKeys))
	found := err == nil
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("look for legacy idempotency records: %w", err)
	}
	if found != s.legacy.Load() {
		if found {
			s.log.Info("idempotency records from an older worker found: ids are also looked up under their legacy keys")
		} else {
			s.log.Info("no idempotency records from an older worker are left")
		}
	}
	s.legacy.Store(found)
	s.legacyChecked.Store(s.clock.Now().UnixNano())
	return nil
}

func timeOf(unixNano int64) time.Time { return time.Unix(0, unixNano) }

// finishMessageOnce stores the outcome of one message under its own key, for an
// outcome that cannot be the id's (see finish), and returns the one stored first.
func (s *store) finishMessageOnce(ctx context.Context, k commandKey, f finished) (*finished, error) {
	return s.storeOnce(ctx, messageResultKey(k, f.Seq), k, f)
}

// finishOnce stores f as the command's outcome unless one is stored already, and
// returns the stored one: two deliveries of an id (published twice, or an ack lost
// while another instance ran it) cannot overwrite each other's outcome.
func (s *store) finishOnce(ctx context.Context, k commandKey, f finished) (*finished, error) {
	return s.storeOnce(ctx, resultKey(k), k, f)
}

// storeOnce creates the record of k under key unless the key holds one of the worker's
// records already, which it returns. A value that is not such a record is replaced (by
// compare-and-set, so that a record stored meanwhile is not): the outcome in hand is
// the command's, and nothing the worker did is lost.
func (s *store) storeOnce(ctx context.Context, key string, k commandKey, f finished) (*finished, error) {
	for {
		_, err := s.kv.Create(ctx, key, f.encode())
		if err == nil {
			return &f, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("store the outcome of %s: %w", k, err)
		}
		entry, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // gone meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read %s from the idempotency bucket: %w", key, err)
		}
		stored, err := decodeRecord(entry.Value(), k)
		if err == nil {
			return stored, nil
		}
		s.log.Warn("replacing a value under a command's key that is not the worker's record", zap.Stringer("command", k), zap.Uint64("seq", f.Seq))
		if _, err := s.kv.Update(ctx, key, f.encode(), entry.Revision()); err == nil {
			return &f, nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, fmt.Errorf("store the outcome of %s: %w", k, err)
		}
	}
}

func (s *store) attempts(ctx context.Context, k commandKey) (attempts, error) {
	var a attempts
	_, err := s.get(ctx, attemptsKey(k), &a)
	return a, err
}

func (s *store) saveAttempts(ctx context.Context, k commandKey, a attempts) error {
	return s.put(ctx, attemptsKey(k), a)
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

// decodeRecord reads the record of command k: it must be the worker's, a stream
// sequence and the result of that very command.
func decodeRecord(data []byte, k commandKey) (*finished, error) {
	var f finished
	var res struct {
		ID      string `json:"id"`
		Project string `json:"project"`
		Type    string `json:"type"`
		Status  string `json:"status"`
	}
	if json.Unmarshal(data, &f) != nil || f.Seq == 0 || json.Unmarshal(f.Result, &res) != nil ||
		res.ID != k.id || res.Project != k.project || res.Type == "" || res.Status == "" {
		return nil, fmt.Errorf("%w (%s)", errUnreadableRecord, k)
	}
	return &f, nil
}
