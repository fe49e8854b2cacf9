package worker

import (
	"cmp"
	"slices"
)

// resources orders commands by the resources they change: commands with a resource in
// common run one at a time, in stream order. A command changes one resource, a plan
// those of all its steps.
//
// A command is granted all its resources at once, when it heads the queue of each and
// none is held; until then it holds none. So no two commands wait for each other: the
// earliest waiting command waits only for commands that run, which finish. A
// redelivery that arrives after later commands (a lost ack) goes ahead of those still
// waiting, in stream order, and behind those that run.
type resources struct {
	queues map[string]*resourceQueue // by resource key, while a command holds or waits for it
}

// resourceQueue is a resource's holder, if any, and the commands waiting for it, in
// stream order.
type resourceQueue struct {
	holder  *task
	waiting []*task
}

func newResources() *resources { return &resources{queues: make(map[string]*resourceQueue)} }

// enqueue queues t for each of its resources and reports whether it holds them all
// now, and may start.
func (r *resources) enqueue(t *task) (start bool) {
	for _, key := range t.keys {
		q := r.queues[key]
		if q == nil {
			q = &resourceQueue{}
			r.queues[key] = q
		}
		i, _ := slices.BinarySearchFunc(q.waiting, t.seq, func(w *task, seq uint64) int { return cmp.Compare(w.seq, seq) })
		q.waiting = slices.Insert(q.waiting, i, t)
	}
	return r.grant(t)
}

// overtakes reports whether t is queued behind no command, but a later one holds one
// of its resources: it arrived after that one started (for the log).
func (r *resources) overtakes(t *task) bool {
	for _, key := range t.keys {
		if h := r.queues[key].holder; h != nil && h.seq > t.seq {
			return true
		}
	}
	return false
}

// grant gives t all its resources if it heads every queue it is in and none is held.
func (r *resources) grant(t *task) bool {
	for _, key := range t.keys {
		q := r.queues[key]
		if q.holder != nil || len(q.waiting) == 0 || q.waiting[0] != t {
			return false
		}
	}
	for _, key := range t.keys {
		q := r.queues[key]
		q.holder, q.waiting = t, q.waiting[1:]
	}
	return true
}

// release frees t's resources and returns the commands that now hold all of theirs.
func (r *resources) release(t *task) (start []*task) {
	var heads []*task
	for _, key := range t.keys {
		q := r.queues[key]
		if q == nil || q.holder != t {
			continue
		}
		q.holder = nil
		if len(q.waiting) == 0 {
			delete(r.queues, key)
			continue
		}
		if !slices.Contains(heads, q.waiting[0]) {
			heads = append(heads, q.waiting[0])
		}
	}
	for _, h := range heads {
		if r.grant(h) {
			start = append(start, h)
		}
	}
	return start
}
