package worker

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/messages"
)

// An id is one command: published again with other params, it is refused as
// id_reused, naming the fields that differ, rather than answered with the first
// command's result as if the second had run. Each record keeps its command's
// fingerprint (messages.Fingerprint): a digest per value, secrets digested with a key
// only the workers hold, so that the same secret sealed twice compares equal and a
// record's reader learns nothing of it. Records from before fingerprints, or with a
// fingerprint of another version, are honoured as they were.

// DigestKeys give the keys that digest a command's secrets in its record; seal.DirKeys
// derives them from the seal keys. DigestKey("") is the current key; a record names its
// key by id.
type DigestKeys interface {
	DigestKey(id string) (key []byte, keyID string, ok bool)
}

// bucketDigestKey is where a fleet without seal keys keeps its digest key: in the
// idempotency bucket, so that whoever may read the bucket can test guesses of a
// secret against a record. Sealing (--seal-keys) keeps the key to the workers.
const bucketDigestKey = "digest-key"

// bucketKeyID names the bucket's key in records: "bucket:" and a digest of the key,
// so that a key made again (after the bucket lost it) is told from the last one.
func bucketKeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return "bucket:" + base64.RawURLEncoding.EncodeToString(sum[:6])
}

// digestKeyTouch is how often, at most, the active instance writes the bucket's
// digest key again: the bucket forgets what is older than the idempotency window, so
// a shorter window makes it more often (keepBucketDigestKey).
const digestKeyTouch = time.Hour

// keepBucketDigestKey writes the bucket's digest key again every digestKeyTouch, or
// every quarter of the idempotency window if that is shorter, so that the bucket never
// forgets it while records digested with it live; without a key at hand (the bucket's
// value was not one, or could not be read) it tries to load one instead. It does
// nothing when the seal keys give the digest keys. The intake loop calls it.
func (w *Worker) keepBucketDigestKey(ctx context.Context) {
	if w.cfg.DigestKeys != nil || w.cfg.Clock.Now().Sub(w.digestTouched) < min(digestKeyTouch, w.cfg.IdempotencyWindow/4) {
		return
	}
	w.digestTouched = w.cfg.Clock.Now()
	if key := w.bucketKey.Load(); key != nil {
		next := w.store.touchDigestKey(ctx, *key)
		w.bucketKey.Store(&next)
		return
	}
	if key, err := w.store.loadBucketDigestKey(ctx); err == nil && key != nil {
		w.bucketKey.Store(&key)
	}
}

// loadBucketDigestKey reads the fleet's digest key from the bucket, making it if there
// is none: the first instance to create it wins. A value that is not a key is left
// alone and secrets are then not compared.
func (s *store) loadBucketDigestKey(ctx context.Context) ([]byte, error) {
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh)
	_, err := s.kv.Create(ctx, bucketDigestKey, []byte(base64.StdEncoding.EncodeToString(fresh)))
	if err == nil {
		return fresh, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("store the digest key: %w", err)
	}
	entry, err := s.kv.Get(ctx, bucketDigestKey)
	if err != nil {
		return nil, fmt.Errorf("read the digest key: %w", err)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(string(entry.Value()))
	if err != nil || len(key) != 32 {
		s.log.Error("the idempotency bucket's digest key is not one: a reused id is compared without its secrets", zap.String("key", bucketDigestKey))
		return nil, nil
	}
	return key, nil
}

// touchDigestKey writes the bucket's digest key again, so that it outlives the
// idempotency window while a fleet runs, and returns the key to use from now on: the
// bucket's, should another instance have made a new one meanwhile.
func (s *store) touchDigestKey(ctx context.Context, key []byte) []byte {
	encoded := []byte(base64.StdEncoding.EncodeToString(key))
	entry, err := s.kv.Get(ctx, bucketDigestKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if fresh, err := s.loadBucketDigestKey(ctx); err == nil && fresh != nil {
			return fresh
		}
	case err != nil:
	case string(entry.Value()) == string(encoded):
		_, err = s.kv.Update(ctx, bucketDigestKey, encoded, entry.Revision())
	default:
		if theirs, err := base64.StdEncoding.Strict().DecodeString(string(entry.Value())); err == nil && len(theirs) == 32 {
			return theirs
		}
	}
	if err != nil {
		s.log.Warn("cannot write the digest key again; retrying later", zap.Error(err))
	}
	return key
}

// digestKey returns the key of id ("" for the current one) and its id.
func (w *Worker) digestKey(id string) (key []byte, keyID string, ok bool) {
	if w.cfg.DigestKeys != nil {
		if key, keyID, ok = w.cfg.DigestKeys.DigestKey(id); ok || id != "" && !isBucketKeyID(id) {
			return key, keyID, ok
		}
	}
	if p := w.bucketKey.Load(); p != nil && (id == "" || id == bucketKeyID(*p)) {
		return *p, bucketKeyID(*p), true
	}
	return nil, "", false
}

func isBucketKeyID(id string) bool {
	return len(id) > len("bucket:") && id[:len("bucket:")] == "bucket:"
}

// fingerprintWith is t's fingerprint, secrets digested with key (left out when nil).
func fingerprintWith(t *task, key []byte) messages.Fingerprint {
	var digest func([]byte) []byte
	if key != nil {
		digest = func(value []byte) []byte {
			mac := hmac.New(sha256.New, key)
			mac.Write(value)
			return mac.Sum(nil)
		}
	}
	return t.cmd.Fingerprint(digest)
}

// recordFingerprint is the fingerprint t's record keeps, and the id of the key its
// secrets were digested with ("" when no key is at hand: they are left out).
func (w *Worker) recordFingerprint(t *task) (messages.Fingerprint, string) {
	if t.invalid != nil {
		return nil, ""
	}
	key, keyID, _ := w.digestKey("")
	return fingerprintWith(t, key), keyID
}

// paramsDiffer lists the field paths where t's params differ from those of the
// command stored under its id; none when the record keeps no fingerprint (an older
// worker's, or an invalid command's). Secrets are compared when the record's key is at
// hand. An invalid command never matches what was stored, whatever the record keeps:
// its answer is a rejection naming the faulty field, never the stored result.
func (w *Worker) paramsDiffer(t *task, stored *finished) []string {
	if t.invalid != nil {
		var invalid *messages.Error
		if errors.As(t.invalid, &invalid) && invalid.Field != "" {
			return []string{invalid.Field}
		}
		return []string{"params"}
	}
	if stored.Params == nil {
		return nil
	}
	var key []byte
	if stored.DigestKey != "" {
		key, _, _ = w.digestKey(stored.DigestKey)
	}
	return stored.Params.Differences(fingerprintWith(t, key), key != nil)
}
