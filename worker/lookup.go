package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
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
		found, err := s.lastRecords(ctx, batch)
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

// finished returns what the store holds of the command's outcome, or nil.
func (s *store) finished(ctx context.Context, k commandKey) (*finished, error) {
	if s.clock.Now().Sub(timeOf(s.legacyChecked.Load())) > legacyRecheck {
		if err := s.detectLegacy(ctx); err != nil {
			return nil, err
		}
	}
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
// has one. One lookup is a plain get; more are one batch direct get.
func (s *store) lastRecords(ctx context.Context, batch []*lookup) (map[string][]byte, error) {
	legacy := s.legacy.Load()
	found := make(map[string][]byte, len(batch))
	if len(batch) == 1 && !legacy {
		key := resultKey(batch[0].key)
		entry, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, fmt.Errorf("read %s from the idempotency bucket: %w", key, err)
		default:
			found[s.subject(key)] = entry.Value()
		}
		return found, nil
	}
	subjects := make([]string, 0, 2*len(batch))
	for _, l := range batch {
		subjects = append(subjects, s.subject(resultKey(l.key)))
		if legacy {
			subjects = append(subjects, s.subject(legacyResultKey(l.key.id)))
		}
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
		return s.decodeRecord(data, k), nil
	}
	data := found[s.subject(legacyResultKey(k.id))]
	if data == nil {
		return nil, nil
	}
	f := s.decodeRecord(data, k)
	if f == nil {
		return nil, nil
	}
	var stored struct {
		Project string `json:"project"`
	}
	if json.Unmarshal(f.Result, &stored) != nil || stored.Project != k.project {
		return nil, nil // another project's id
	}
	f.legacy = true
	return f, nil
}

// decodeRecord reads a stored record; one that is not the worker's is ignored.
func (s *store) decodeRecord(data []byte, k commandKey) *finished {
	var f finished
	if err := json.Unmarshal(data, &f); err != nil || len(f.Result) == 0 {
		s.log.Warn("ignoring an unreadable record in the idempotency bucket", zap.Stringer("command", k))
		return nil
	}
	return &f
}

func (s *store) subject(key string) string { return "$KV." + s.bucket + "." + key }

// batchGetter asks a stream for the last message of many subjects at once (a batch
// direct get, nats-server 2.11 and later), on one subscription kept for every request:
// a subscription per request would cost more than the round trips it saves. One
// goroutine uses it at a time.
type batchGetter struct {
	nc      *nats.Conn
	subject string // $JS.API.DIRECT.GET.<stream>
	inbox   string
	sub     *nats.Subscription
	n       uint64 // the request counter: replies to an abandoned request are dropped
}

func newBatchGetter(nc *nats.Conn, stream string) (*batchGetter, error) {
	g := &batchGetter{nc: nc, subject: "$JS.API.DIRECT.GET." + stream, inbox: nc.NewInbox()}
	sub, err := nc.SubscribeSync(g.inbox + ".*")
	if err != nil {
		return nil, fmt.Errorf("batch get: %w", err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil { // a batch is bounded by its request
		return nil, fmt.Errorf("batch get: %w", err)
	}
	g.sub = sub
	return g, nil
}

// lastFor puts the data of the last message of each subject that has one into found,
// by subject.
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
		switch status := msg.Header.Get("Status"); {
		case status == "404":
			return nil // none of the subjects has a message
		case status == "204":
			return nil // end of the batch
		case status != "":
			return fmt.Errorf("batch get: status %s %s", status, msg.Header.Get("Description"))
		}
		if op := msg.Header.Get("KV-Operation"); op != "DEL" && op != "PURGE" {
			found[msg.Header.Get(jetstream.SubjectHeader)] = msg.Data
		}
	}
}
