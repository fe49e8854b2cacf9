package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxLookupBatch bounds the commands one batch lookup asks for: with a legacy key
// each, well within the server's 1024 answers to one direct get.
const maxLookupBatch = 256

// lookup is one command's question to the coalescer: has it finished?
type lookup struct {
	key  commandKey
	done chan lookupAnswer
}

type lookupAnswer struct {
	finished *finished
	err      error
}

// runLookups answers lookups until ctx ends: it takes every lookup waiting at that
// moment and asks the server about all of them in one batch direct get, so that busy
// workers pay one round trip per batch rather than one per command, and an idle one
// pays what a single get does.
func (s *store) runLookups(ctx context.Context) {
	for {
		var batch []*lookup
		select {
		case l := <-s.lookups:
			batch = append(batch, l)
		case <-ctx.Done():
			return
		}
	gather:
		for len(batch) < maxLookupBatch {
			select {
			case l := <-s.lookups:
				batch = append(batch, l)
			default:
				break gather
			}
		}
		found, err := s.lookUp(ctx, batch)
		for _, l := range batch {
			if err != nil {
				l.done <- lookupAnswer{err: err}
				continue
			}
			f, err := s.recordFor(l.key, found)
			l.done <- lookupAnswer{finished: f, err: err}
		}
	}
}

// lookUp reads a batch's records, bounded like every other read of the worker's own
// records: a request or answer lost in a reconnect must not stall every lookup.
func (s *store) lookUp(ctx context.Context, batch []*lookup) (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, finishTimeout)
	defer cancel()
	if s.clock.Now().Sub(timeOf(s.legacyChecked.Load())) > legacyRecheck {
		if err := s.detectLegacy(ctx); err != nil {
			return nil, err
		}
	}
	return s.lastRecords(ctx, batch)
}

// finished returns what the store holds of the command's outcome, or nil.
func (s *store) finished(ctx context.Context, k commandKey) (*finished, error) {
	l := &lookup{key: k, done: make(chan lookupAnswer, 1)}
	select {
	case s.lookups <- l:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case a := <-l.done:
		return a.finished, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lastRecords reads the records of a batch of lookups, under their keys and, while
// legacy records may exist, their legacy keys: the latest message of each subject that
// has one. One lookup, or a bucket that does not allow direct gets, is read with plain
// gets; more are one batch direct get.
func (s *store) lastRecords(ctx context.Context, batch []*lookup) (map[string][]byte, error) {
	legacy := s.legacy.Load()
	found := make(map[string][]byte, len(batch))
	keys := make([]string, 0, 2*len(batch))
	for _, l := range batch {
		keys = append(keys, resultKey(l.key))
		if legacy {
			keys = append(keys, legacyResultKey(l.key.id))
		}
	}
	if len(keys) == 1 || !s.batchGet.direct {
		for _, key := range keys {
			entry, err := s.kv.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return nil, fmt.Errorf("read %s from the idempotency bucket: %w", key, err)
			default:
				found[s.subject(key)] = entry.Value()
			}
		}
		return found, nil
	}
	subjects := make([]string, len(keys))
	for i, key := range keys {
		subjects[i] = s.subject(key)
	}
	if err := s.batchGet.lastFor(ctx, subjects, found); err != nil {
		return nil, fmt.Errorf("look up %d commands in the idempotency bucket: %w", len(batch), err)
	}
	return found, nil
}

// recordFor picks a lookup's record out of a batch's: under its key, else under its
// legacy key when that record names the same project.
func (s *store) recordFor(k commandKey, found map[string][]byte) (*finished, error) {
	if data := found[s.subject(resultKey(k))]; data != nil {
		return decodeRecord(data, k)
	}
	data := found[s.subject(legacyResultKey(k.id))]
	if data == nil {
		return nil, nil
	}
	var legacy finished
	var stored struct {
		Project string `json:"project"`
	}
	if json.Unmarshal(data, &legacy) != nil || json.Unmarshal(legacy.Result, &stored) != nil || stored.Project != k.project {
		return nil, nil // another project's id: the legacy key holds only ids
	}
	f, err := decodeRecord(data, k)
	if err != nil {
		return nil, err
	}
	f.legacy = true
	return f, nil
}

// errUnreadableRecord: a record under a command's key is not one the worker wrote
// for it. Taking it for "not finished" could run the command again, so the command
// waits, and the worker says why, until the record is readable or gone.
var errUnreadableRecord = errors.New("the idempotency record under this command's key is not the worker's: the command waits until it is removed or expires")

func (s *store) subject(key string) string { return "$KV." + s.bucket + "." + key }

// batchGetter asks a stream for the last message of many subjects at once (a batch
// direct get, nats-server 2.11 and later), on one subscription kept for every request:
// a subscription per request would cost more than the round trips it saves. One
// goroutine uses it at a time.
type batchGetter struct {
	nc      *nats.Conn
	subject string // $JS.API.DIRECT.GET.<stream>
	direct  bool   // the stream allows direct gets; else lastRecords uses plain gets
	inbox   string
	sub     *nats.Subscription
	n       uint64 // the request counter: replies to an abandoned request are dropped
}

func newBatchGetter(nc *nats.Conn, stream jetstream.Stream) (*batchGetter, error) {
	cfg := stream.CachedInfo().Config
	g := &batchGetter{nc: nc, subject: "$JS.API.DIRECT.GET." + cfg.Name, direct: cfg.AllowDirect, inbox: nc.NewInbox()}
	sub, err := nc.SubscribeSync(g.inbox + ".*")
	if err != nil {
		return nil, fmt.Errorf("batch get: %w", err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil { // a batch is bounded by its request
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("batch get: %w", err)
	}
	g.sub = sub
	return g, nil
}

func (g *batchGetter) close() { _ = g.sub.Unsubscribe() }

// lastFor puts the data of the last message of each subject that has one into found,
// by subject. Only a complete answer counts: the server folds a message it could not
// load into "404 Message Not Found", and stops early at the request's byte limit,
// saying so in the end marker's pending count; either is an error, and the lookups are
// asked again.
func (g *batchGetter) lastFor(ctx context.Context, subjects []string, found map[string][]byte) error {
	req, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
	}{subjects})
	if err != nil {
		return err
	}
	g.n++
	reply := g.inbox + "." + strconv.FormatUint(g.n, 10)
	if err := g.nc.PublishRequest(g.subject, reply, req); err != nil {
		return err
	}
	for {
		msg, err := g.sub.NextMsgWithContext(ctx)
		if err != nil {
			return err
		}
		if msg.Subject != reply {
			continue // a late answer to an earlier request
		}
		status, description := msg.Header.Get("Status"), msg.Header.Get("Description")
		switch {
		case status == "404" && description == "No Results":
			return nil // none of the subjects has a message
		case status == "204":
			if pending := msg.Header.Get("Nats-Num-Pending"); pending != "0" {
				return fmt.Errorf("batch get: the answer stopped with %s records pending", pending)
			}
			return nil
		case status != "":
			return fmt.Errorf("batch get: status %s %s", status, description)
		}
		if op := msg.Header.Get("KV-Operation"); op != "DEL" && op != "PURGE" && msg.Header.Get(jetstream.MarkerReasonHeader) == "" {
			found[msg.Header.Get(jetstream.SubjectHeader)] = msg.Data
		}
	}
}
