package worker

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// scheduler holds the commands this instance was delivered, from admission to
// release, and decides when each may start: behind the commands for its resources
// (resources.go), and, while its consumer may still have commands out with another
// instance, parked behind that consumer's barrier (takeover.go, docs/design/fleet.md).
// The commands that may start go to ready, in the order they may.
//
// It also keeps what the fleet's order rests on: the copies of each command held
// (a command that came back while held is held twice), those acknowledged lately, the
// consumer sequence of each watched consumer's last delivery, and the commands to hand
// back in stream order at shutdown.
type scheduler struct {
	clock     Clock
	log       *zap.Logger
	connected func() bool // to NATS: a Nak is lost otherwise
	room      *room
	ready     *readyQueue
	// behind is the room a consumer's project gets behind a barrier on top of what
	// the consumer lets be unacknowledged: copies of a command take a place each.
	behind int

	mu            sync.Mutex
	held          map[*task]struct{}
	copies        map[copyKey]int // how many deliveries of each command are held
	recentlyAcked ackedSet        // commands acknowledged here in the last two AckWaits or so
	resources     *resources
	barriers      map[*source]*barrier       // consumers whose new commands are parked
	watches       map[*source]*deliveryWatch // consumers whose deliveries are checked for gaps, this term
	handBacks     []*task                    // to hand back in stream order at shutdown
	idle          chan struct{}              // closed when nothing is held, while awaited
	// term is the lease term commands are admitted in; termWait ends when that term
	// does or shutdown starts.
	term     *term
	termWait context.Context
}

// deliveryWatch is the last delivery seen from a consumer in this term.
type deliveryWatch struct {
	last  uint64 // its consumer sequence
	known bool
}

func newScheduler(clock Clock, log *zap.Logger, connected func() bool, room *room, behind int) *scheduler {
	return &scheduler{clock: clock, log: log, connected: connected, room: room, ready: newReadyQueue(), behind: behind,
		held: make(map[*task]struct{}), copies: make(map[copyKey]int), resources: newResources(),
		barriers: make(map[*source]*barrier), watches: make(map[*source]*deliveryWatch)}
}

// beginTerm admits the commands delivered from now on in lease term t; wait ends
// with it.
func (s *scheduler) beginTerm(t *term, wait context.Context) {
	s.mu.Lock()
	s.term, s.termWait = t, wait
	s.mu.Unlock()
}

// hold takes t into the current term: parked behind its consumer's barrier, queued
// behind the commands for its resources, or ready. It returns false, holding nothing,
// when the term has ended: t was delivered to a pull sent before this instance lost
// the lease (it was frozen, say), and another instance runs the consumer's commands.
func (s *scheduler) hold(t *task) bool {
	s.mu.Lock()
	t.term, t.waitCtx = s.term, s.termWait
	if t.term.ended() {
		s.mu.Unlock()
		return false
	}
	s.held[t] = struct{}{}
	s.copies[copyKey{t.src, t.seq}]++
	if s.recentlyAcked.has(copyKey{t.src, t.seq}) {
		t.acked.Store(true)
	}
	if watch := s.watches[t.src]; watch != nil {
		s.noteDeliveryLocked(t.src, watch, t.msg)
	}
	if b := s.barriers[t.src]; b != nil {
		b.parked = append(b.parked, t)
		s.mu.Unlock()
		return true
	}
	start := s.enqueueLocked(t)
	s.mu.Unlock()
	if start {
		s.ready.push(t)
	}
	return true
}

// enqueueLocked queues t behind the commands for its resources and reports whether it
// may start now.
func (s *scheduler) enqueueLocked(t *task) (start bool) {
	start = s.resources.enqueue(t)
	if !start && s.resources.overtakes(t) {
		s.log.Warn("a command arrived after a later one for its resource started", zap.String("id", t.cmd.ID), zap.Uint64("seq", t.seq))
	}
	return start
}

// release forgets a finished, dropped or handed-back command and frees its
// resources, starting the commands that now hold all of theirs.
func (s *scheduler) release(t *task) {
	s.mu.Lock()
	s.forgetLocked(t)
	ready := s.resources.release(t)
	s.mu.Unlock()
	for _, next := range ready {
		s.ready.push(next)
	}
}

// forgetLocked drops t from the held commands and frees its room.
func (s *scheduler) forgetLocked(t *task) {
	if _, held := s.held[t]; held {
		if k := (copyKey{t.src, t.seq}); s.copies[k] <= 1 {
			delete(s.copies, k)
		} else {
			s.copies[k]--
		}
	}
	delete(s.held, t)
	if s.idle != nil && len(s.held) == 0 {
		close(s.idle)
	}
	s.room.free(t.src.roomKey(), 1)
}

// count is how many commands are held.
func (s *scheduler) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// awaitIdle waits until nothing is held, or until timeout fires (nil: no timeout); it
// reports whether nothing is held.
func (s *scheduler) awaitIdle(timeout <-chan time.Time) bool {
	s.mu.Lock()
	s.idle = make(chan struct{})
	if len(s.held) == 0 {
		close(s.idle)
	}
	idle := s.idle
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.idle = nil
		s.mu.Unlock()
	}()
	select {
	case <-idle:
		return true
	case <-timeout:
		return false
	}
}

// handBackLater keeps t, unfinished, for handBackInOrder.
func (s *scheduler) handBackLater(t *task) {
	s.mu.Lock()
	s.handBacks = append(s.handBacks, t)
	s.mu.Unlock()
}

// handBackInOrder returns the unfinished commands to the stream at shutdown, in stream
// order and from one goroutine: the server redelivers Nak'd commands first come,
// first served, so the next active instance gets them in order.
func (s *scheduler) handBackInOrder() {
	s.mu.Lock()
	backs := s.handBacks
	s.handBacks = nil
	s.mu.Unlock()
	slices.SortFunc(backs, bySeq)
	for _, t := range backs {
		if err := t.msg.Nak(); err != nil {
			s.log.Warn("handing a command back", zap.String("id", t.cmd.ID), zap.Error(err))
		}
	}
	if len(backs) > 0 {
		s.log.Info("handed commands back to the stream, in order", zap.Int("commands", len(backs)))
	}
}

// inStreamOrder lists every command held or to hand back, in stream order, for
// keepAlive.
func (s *scheduler) inStreamOrder() []*task {
	s.mu.Lock()
	tasks := make([]*task, 0, len(s.held)+len(s.handBacks))
	for t := range s.held {
		tasks = append(tasks, t)
	}
	tasks = append(tasks, s.handBacks...)
	s.mu.Unlock()
	slices.SortFunc(tasks, bySeq)
	return tasks
}

// markAcked notes that t's command is being acknowledged, in every delivery of it
// held here or arriving soon: a barrier counts none of them as out any more.
func (s *scheduler) markAcked(t *task) {
	t.acked.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	// A copy still on its way here when this one is acknowledged is marked as it
	// arrives (hold).
	s.recentlyAcked.add(copyKey{t.src, t.seq})
	if s.copies[copyKey{t.src, t.seq}] <= 1 {
		return
	}
	for other := range s.held {
		if other.src == t.src && other.seq == t.seq {
			other.acked.Store(true)
		}
	}
}

// watching reports whether src's deliveries are checked in this term.
func (s *scheduler) watching(src *source) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watches[src] != nil
}

// watch starts checking src's deliveries from the consumer's state in info, and
// raises its barrier unless the consumer was just made (fresh) and so has nothing out:
// one reading is not enough to call a consumer clear, since its leader may have been
// elected a moment ago and still be applying its log. The barrier ends once a leader
// that answered twice says every command out is here (endBarrier).
func (s *scheduler) watch(src *source, info *jetstream.ConsumerInfo, fresh bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watches[src] = &deliveryWatch{last: info.Delivered.Consumer, known: true}
	if !fresh {
		s.raiseBarrierLocked(src, consumerLeader(info))
		if info.NumAckPending > 0 {
			s.log.Info("the consumer's new commands wait until those still out are back",
				zap.String("consumer", src.name), zap.Int("out", info.NumAckPending))
		}
	}
}

// noteDeliveryLocked checks that a command delivered from src follows the last one
// this instance got from it. A gap means the consumer delivered commands to another
// client meanwhile (a thawed instance's pull, or a pull's answer lost in a reconnect),
// which will not run them: they come back later, and src's later commands must wait
// for them.
func (s *scheduler) noteDeliveryLocked(src *source, watch *deliveryWatch, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	switch {
	case err != nil:
		watch.known = false
	case watch.known && meta.Sequence.Consumer == watch.last+1:
		watch.last = meta.Sequence.Consumer
		return
	default:
		if s.barriers[src] == nil {
			s.log.Warn("the consumer delivered commands to another instance: its new commands wait until those are back",
				zap.String("consumer", src.name), zap.Uint64("expected_delivery", watch.last+1), zap.Uint64("delivery", meta.Sequence.Consumer),
				zap.Bool("known", watch.known))
			s.raiseBarrierLocked(src, "")
		}
		watch.last, watch.known = meta.Sequence.Consumer, true
	}
}

// raiseBarrierLocked parks src's new commands until those still out are back. Its
// project may hold every command the consumer lets be unacknowledged, and as many
// again as the worker's room: copies of a command (one that came back while held) take
// a place each.
func (s *scheduler) raiseBarrierLocked(src *source, leader string) {
	if s.barriers[src] != nil {
		return
	}
	s.barriers[src] = &barrier{leader: leader, checkedAt: s.clock.Now()}
	s.room.lift(src.roomKey(), src.get().CachedInfo().Config.MaxAckPending+s.behind)
}

// barrierSources lists the consumers behind a barrier, forgetting on the way the
// acknowledgements older than keep.
func (s *scheduler) barrierSources(keep time.Duration) []*source {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recentlyAcked.age(s.clock.Now(), keep)
	srcs := make([]*source, 0, len(s.barriers))
	for src := range s.barriers {
		srcs = append(srcs, src)
	}
	return srcs
}

// barrierDue returns src's barrier when it is up and was not checked in the last
// every, marking it checked now; else nil.
func (s *scheduler) barrierDue(src *source, every time.Duration) *barrier {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.barriers[src]
	if b == nil || s.clock.Now().Sub(b.checkedAt) < every {
		return nil
	}
	b.checkedAt = s.clock.Now()
	return b
}

// endBarrier ends src's barrier b, if it is still up, once info, read from a leader
// that answered the time before too, shows every command of src that is not
// acknowledged held here; it then queues the parked commands in stream order.
// Commands are counted by stream sequence, once each, only above the consumer's ack
// floor and unless a copy of them was acknowledged here.
func (s *scheduler) endBarrier(src *source, b *barrier, info *jetstream.ConsumerInfo) {
	s.mu.Lock()
	if s.barriers[src] != b {
		s.mu.Unlock()
		return
	}
	if leader := consumerLeader(info); leader != b.leader {
		b.leader = leader
		s.mu.Unlock()
		return
	}
	held := make(map[uint64]struct{})
	for t := range s.held {
		if t.src == src && t.seq > info.AckFloor.Stream && !t.acked.Load() {
			held[t.seq] = struct{}{}
		}
	}
	if info.NumAckPending > len(held) {
		s.mu.Unlock()
		return
	}
	delete(s.barriers, src)
	parked := b.parked
	slices.SortFunc(parked, bySeq)
	var start []*task
	for _, t := range parked {
		if s.enqueueLocked(t) {
			start = append(start, t)
		}
	}
	s.mu.Unlock()
	s.room.unlift(src.roomKey())
	if len(parked) > 0 || info.NumAckPending > 0 {
		s.log.Info("every command of the consumer is back: running them in stream order", zap.String("consumer", src.name),
			zap.Int("commands", len(parked)))
	}
	for _, t := range start {
		s.ready.push(t)
	}
}

// unpark ends the term's watches and barriers. The parked commands are forgotten:
// at shutdown they are kept to hand back with the others; else they are returned as
// dropped, for the caller to hand back at once (the next active instance gets them).
func (s *scheduler) unpark(shutdown bool) (dropped []*task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.watches)
	for src, b := range s.barriers {
		for _, t := range b.parked {
			if shutdown {
				s.handBacks = append(s.handBacks, t)
				t.traceEnd(nil, errHandBack)
			} else {
				dropped = append(dropped, t)
				t.traceEnd(nil, errDropped)
			}
			s.forgetLocked(t)
		}
		delete(s.barriers, src)
		s.room.unlift(src.roomKey())
	}
	return dropped
}

// ackedSet remembers the commands acknowledged lately in two generations, so that
// forgetting the old ones costs nothing per command. A copy of an acknowledged command
// arrives within an AckWait, if at all.
type ackedSet struct {
	current, previous map[copyKey]struct{}
	since             time.Time // when current started
}

func (a *ackedSet) add(k copyKey) {
	if a.current == nil {
		a.current = make(map[copyKey]struct{})
	}
	a.current[k] = struct{}{}
}

func (a *ackedSet) has(k copyKey) bool {
	_, now := a.current[k]
	_, before := a.previous[k]
	return now || before
}

// age starts a new generation once the current one is older than keep.
func (a *ackedSet) age(now time.Time, keep time.Duration) {
	if now.Sub(a.since) >= keep {
		a.previous, a.current, a.since = a.current, nil, now
	}
}

// barrier parks the commands a consumer delivers while others of its commands may
// still be out with another instance (the scheduler keeps it). Meanwhile the
// consumer's project may hold as many commands as the consumer lets be unacknowledged
// (room.lift): every command out fits, and the server redelivers commands even at that
// limit, so the barrier ends once they are back.
type barrier struct {
	parked    []*task
	checkedAt time.Time // when the consumer was last asked
	// leader is the consumer's leader whose answer the barrier may trust: one that was
	// leader at the previous reading too, so that a leader still catching up on its
	// log does not end it.
	leader string
}

// consumerLeader names the server that answered for the consumer.
func consumerLeader(info *jetstream.ConsumerInfo) string {
	if info.Cluster == nil {
		return "-"
	}
	return info.Cluster.Leader
}

// nakDropped hands back a command this instance may no longer run, so that the active
// instance gets it without waiting for AckWait; its barrier parks whatever comes after
// it meanwhile. Cut off from NATS, the Nak is lost and AckWait brings the command back.
func (s *scheduler) nakDropped(t *task) {
	if err := t.msg.Nak(); err != nil && s.connected() {
		s.log.Warn("handing a dropped command back", zap.String("id", t.cmd.ID), zap.Error(err))
	}
}
