package worker

import "sync"

// room counts the commands the worker holds against a limit: 2×Concurrency normally,
// and, while it takes over, as many as the consumer lets be unacknowledged, so that
// every command still out can come back to it (see barrier).
type room struct {
	mu    sync.Mutex
	used  int
	limit int
	freed chan struct{} // closed and replaced when room frees or the limit grows
}

func newRoom(limit int) *room { return &room{limit: limit, freed: make(chan struct{})} }

// take takes up to n places that are free now and returns how many it took.
func (r *room) take(n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n = max(0, min(n, r.limit-r.used))
	r.used += n
	return n
}

// changed returns a channel closed when room frees or the limit grows.
func (r *room) changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.freed
}

// free gives n places back.
func (r *room) free(n int) {
	if n == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.used -= n
	r.notifyLocked()
}

// setLimit changes the limit; places taken above a lowered limit stay taken until
// freed.
func (r *room) setLimit(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > r.limit {
		r.notifyLocked()
	}
	r.limit = n
}

func (r *room) notifyLocked() {
	close(r.freed)
	r.freed = make(chan struct{})
}
