package worker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// lease elects the one instance of a fleet that takes commands: a key in the
// idempotency bucket, written only by compare-and-set on its revision. The holder
// renews it every timeout/4 and stops starting APIOps requests (fences) when its last
// successful renewal was sent more than 3/4 of the timeout ago; a standby takes the key
// when it is released, or when its revision has not changed for the whole timeout, so
// the holder has fenced before anyone can take over. See docs/design/fleet.md.
type lease struct {
	kv      jetstream.KeyValue // set by setBucket, before run
	key     string
	holder  string
	timeout time.Duration
	clock   Clock
	log     *zap.Logger
	// onChange is told every change of whether this instance holds the lease.
	onChange func(active bool)

	mu        sync.Mutex
	term      *term     // while held
	revision  uint64    // of this holder's last successful write
	renewedAt time.Time // when that write was sent
	fenced    bool      // logged as fenced, until a renewal succeeds
	// standingBy: the worker can take commands; while it still drains a lost term's
	// commands it does not seek the lease, which it could not use.
	standingBy bool
	failing    string // the last error logged, so that each is logged once
	changed    chan struct{}
}

// term is one period of holding the lease.
type term struct {
	// clean: the previous holder released the lease, having handed its commands back.
	clean bool
	// lastSeen is when the previous holder's last renewal was seen, for a takeover
	// after it expired.
	lastSeen time.Time
	previous string
	lost     chan struct{} // closed when the term ends
}

func (t *term) ended() bool { return isClosed(t.lost) }

type leaseRecord struct {
	Holder   string `json:"holder"`
	Released bool   `json:"released,omitempty"`
}

// parseLease reads a lease record: an object of the worker's own form, with a holder.
// Anything else under the key (a stray write) is no lease, and changes nothing about
// who holds it.
func parseLease(data []byte) (leaseRecord, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rec leaseRecord
	if dec.Decode(&rec) != nil || dec.More() || rec.Holder == "" {
		return leaseRecord{}, false
	}
	return rec, true
}

func newLease(consumer, holder string, timeout time.Duration, clock Clock, log *zap.Logger, onChange func(bool)) *lease {
	return &lease{
		key:    "lease." + base64.RawURLEncoding.EncodeToString([]byte(consumer)),
		holder: holder, timeout: timeout, clock: clock, log: log, onChange: onChange,
		changed: make(chan struct{}), standingBy: true,
	}
}

// standBy says whether the worker can take commands if it gets the lease.
func (l *lease) standBy(can bool) {
	l.mu.Lock()
	l.standingBy = can
	l.mu.Unlock()
}

// setBucket names the bucket that holds the lease; run must not have started.
func (l *lease) setBucket(kv jetstream.KeyValue) { l.kv = kv }

func (l *lease) interval() time.Duration { return l.timeout / 4 }

// readInterval is how often a standby reads the lease: at least every second, so that
// a released lease is taken at once whatever the timeout.
func (l *lease) readInterval() time.Duration { return min(l.interval(), time.Second) }
func (l *lease) fenceAfter() time.Duration   { return l.timeout * 3 / 4 }

// run renews the lease while it is held and otherwise watches for a chance to take it,
// until ctx ends.
func (l *lease) run(ctx context.Context) {
	var seenRev uint64
	var seenAt time.Time
	for ctx.Err() == nil {
		wait := l.readInterval()
		l.mu.Lock()
		held, standingBy := l.term != nil, l.standingBy
		l.mu.Unlock()
		switch {
		case held:
			l.renew(ctx)
			wait = l.interval()
		case standingBy:
			l.tryAcquire(ctx, &seenRev, &seenAt)
		}
		select {
		case <-l.clock.After(wait):
		case <-ctx.Done():
		}
	}
}

// current is the term while the lease is held, else nil.
func (l *lease) current() *term {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term
}

// await returns the term once this instance holds the lease, or nil when ctx ends.
func (l *lease) await(ctx context.Context) *term {
	for {
		l.mu.Lock()
		t, changed := l.term, l.changed
		l.mu.Unlock()
		if t != nil {
			return t
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// canStart reports whether this instance may start an APIOps request now: it holds the
// lease and its last successful renewal is recent enough that no standby can have
// taken over.
func (l *lease) canStart() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term != nil && l.clock.Now().Sub(l.renewedAt) < l.fenceAfter()
}

// awaitChange returns a channel closed at the next change of the lease's state: taken,
// lost, or renewed after a failure.
func (l *lease) awaitChange() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// notifyLocked wakes everyone waiting for a change.
func (l *lease) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *lease) record(released bool) []byte {
	data, _ := json.Marshal(leaseRecord{Holder: l.holder, Released: released})
	return data
}

func (l *lease) tryAcquire(ctx context.Context, seenRev *uint64, seenAt *time.Time) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	sentAt := l.clock.Now()
	entry, err := l.kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Never held, or removed: whoever held it last is unknown, so its commands are
		// waited for as after an expiry.
		if rev, err := l.kv.Create(ctx, l.key, l.record(false)); err == nil {
			l.acquired(rev, sentAt, &term{lastSeen: sentAt})
		}
		return
	}
	if err != nil {
		l.failed("cannot read the lease", err)
		return
	}
	l.failed("", nil)
	rec, ok := parseLease(entry.Value())
	if !ok {
		// A stray write is no renewal: the holder, if alive, writes its record back
		// within a quarter of the timeout; if not, the timeout runs from its last one.
		if *seenAt == (time.Time{}) {
			*seenAt = l.clock.Now()
		}
		rec = leaseRecord{Holder: "(not a lease record)"}
	} else if entry.Revision() != *seenRev {
		*seenRev, *seenAt = entry.Revision(), l.clock.Now()
	}
	if !rec.Released && l.clock.Now().Sub(*seenAt) < l.timeout {
		return
	}
	rev, err := l.kv.Update(ctx, l.key, l.record(false), entry.Revision())
	if err != nil {
		return // another standby was faster, or the holder renewed after all
	}
	l.acquired(rev, sentAt, &term{clean: rec.Released, lastSeen: *seenAt, previous: rec.Holder})
}

func (l *lease) acquired(rev uint64, sentAt time.Time, t *term) {
	t.lost = make(chan struct{})
	l.mu.Lock()
	l.term, l.revision, l.renewedAt, l.fenced = t, rev, sentAt, false
	l.notifyLocked()
	l.mu.Unlock()
	how := "the lease was free"
	switch {
	case t.clean:
		how = "the previous instance handed over"
	case t.previous != "":
		how = "the previous instance stopped renewing"
	}
	l.log.Info("active: this instance takes the commands", zap.String("previous", t.previous), zap.String("because", how))
	l.onChange(true)
}

// renew writes the lease record again over the revision this instance last wrote.
func (l *lease) renew(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout/2)
	defer cancel()
	l.mu.Lock()
	rev := l.revision
	l.mu.Unlock()
	sentAt := l.clock.Now()
	newRev, err := l.kv.Update(ctx, l.key, l.record(false), rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) { // 10071, or 10164 on replicated buckets
		var settled bool
		if settled, err = l.revisionMoved(ctx); settled {
			return
		}
	}
	if err != nil {
		l.renewFailed(err)
		return
	}
	l.renewed(newRev, sentAt)
}

// revisionMoved finds out why the record's revision is not the one this instance last
// wrote: another instance took over, or an earlier renewal of ours succeeded though its
// answer was lost. The holder in the record tells. settled is false when the record
// could not be read (err says why).
func (l *lease) revisionMoved(ctx context.Context) (settled bool, err error) {
	entry, getErr := l.kv.Get(ctx, l.key)
	rec, isLease := leaseRecord{}, false
	if getErr == nil {
		rec, isLease = parseLease(entry.Value())
	}
	l.mu.Lock()
	current := l.clock.Now().Sub(l.renewedAt) < l.fenceAfter()
	l.mu.Unlock()
	// A stray write over the record is repaired only while no standby can have
	// taken over: one takes over only a whole timeout after a renewal it saw, and
	// this instance renewed less than three quarters of one ago. Later, the stray
	// write may lie over another instance's lease.
	if getErr == nil && (isLease && rec.Holder == l.holder && !rec.Released || !isLease && current) {
		if !isLease {
			l.log.Warn("the lease's key holds something that is not a lease record: this instance writes its lease back")
		}
		l.mu.Lock()
		l.revision = entry.Revision()
		l.mu.Unlock()
		return true, nil // renewed at the next turn, with the right revision
	}
	switch {
	case getErr == nil && !isLease:
		l.lose("the lease's key holds something that is not a lease record, and this instance renewed too long ago to know the lease is still its own")
	case getErr == nil:
		l.lose("another instance holds the lease: " + rec.Holder)
	case errors.Is(getErr, jetstream.ErrKeyNotFound):
		l.lose("the lease's key is gone (the bucket was purged or recreated)")
	default:
		return false, getErr
	}
	return true, nil
}

// renewFailed fences this instance once it has gone fenceAfter without a renewal.
func (l *lease) renewFailed(err error) {
	l.failed("cannot renew the lease; no new APIOps requests start after "+l.fenceAfter().String()+" without a renewal", err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.fenced && l.clock.Now().Sub(l.renewedAt) >= l.fenceAfter() {
		l.fenced = true
		l.log.Warn("fenced: the lease was not renewed in time; no new APIOps requests start", zap.Duration("since_renewal", l.clock.Now().Sub(l.renewedAt)))
	}
}

// renewed notes a renewal sent at sentAt, which ends a fence.
func (l *lease) renewed(newRev uint64, sentAt time.Time) {
	l.failed("", nil)
	l.mu.Lock()
	defer l.mu.Unlock()
	couldNotStart := l.clock.Now().Sub(l.renewedAt) >= l.fenceAfter()
	l.revision, l.renewedAt = newRev, sentAt
	if l.fenced {
		l.fenced = false
		l.log.Info("lease renewed: APIOps requests start again")
	}
	if couldNotStart {
		l.notifyLocked()
	}
}

// lose ends the term when another instance took the lease.
func (l *lease) lose(why string) {
	if l.end() {
		l.log.Warn("standby: this instance no longer holds the lease; it drops the commands it held, which the active instance gets", zap.String("why", why))
	}
}

// end ends the term, if there is one: this instance is a standby again.
func (l *lease) end() bool {
	l.mu.Lock()
	t := l.term
	if t == nil {
		l.mu.Unlock()
		return false
	}
	l.term, l.standingBy = nil, false // until the worker has dropped the term's commands
	close(t.lost)
	l.notifyLocked()
	l.mu.Unlock()
	l.onChange(false)
	return true
}

// release gives the lease up for a standby to take at once: the caller has handed every
// command back.
func (l *lease) release(ctx context.Context) {
	l.mu.Lock()
	t, rev, current := l.term, l.revision, l.clock.Now().Sub(l.renewedAt) < l.fenceAfter()
	l.mu.Unlock()
	if t == nil {
		return
	}
	_, err := l.kv.Update(ctx, l.key, l.record(true), rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// A renewal cut short by the stop may have landed after all: if the record is
		// still ours, release it at its revision.
		if entry, getErr := l.kv.Get(ctx, l.key); getErr == nil {
			if rec, ok := parseLease(entry.Value()); ok && rec.Holder == l.holder && !rec.Released || !ok && current {
				_, err = l.kv.Update(ctx, l.key, l.record(true), entry.Revision())
			}
		}
	}
	if err != nil {
		l.log.Warn("cannot release the lease; a standby takes over when it expires", zap.Error(err))
	} else {
		l.log.Info("lease released: a standby takes over now")
	}
	l.end()
}

// failed logs an error of reading or renewing once, until it changes or the operation
// succeeds (err nil).
func (l *lease) failed(what string, err error) {
	msg := ""
	if err != nil {
		msg = fmt.Sprintf("%s: %v", what, err)
	}
	l.mu.Lock()
	changed := msg != l.failing
	l.failing = msg
	l.mu.Unlock()
	if changed && err != nil {
		l.log.Warn(what, zap.Error(err))
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
