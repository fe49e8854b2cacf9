package worker

import "sync"

// room counts the commands the worker holds against a limit: 2×Concurrency normally,
// and, while it takes over, as many as the consumers let be unacknowledged, so that
// every command still out can come back to it (see barrier). Each project may hold at
// most its share of the limit, split among the projects that hold or wait for places,
// so that a project with a backlog leaves room for the others' commands.
type room struct {
	mu        sync.Mutex
	used      int
	limit     int
	byProject map[string]int // places held
	wanting   map[string]int // pulls waiting for a place
	freed     chan struct{}  // closed and replaced when room frees or the limit grows
}

func newRoom(limit int) *room {
	return &room{limit: limit, byProject: make(map[string]int), wanting: make(map[string]int), freed: make(chan struct{})}
}

// shareLocked is how many places one project may hold now.
func (r *room) shareLocked() int {
	active := len(r.byProject)
	for p := range r.wanting {
		if r.byProject[p] == 0 {
			active++
		}
	}
	return max(1, (r.limit+active-1)/max(active, 1))
}

// take takes up to n places for project that are free now, within its share, and
// returns how many it took.
func (r *room) take(project string, n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n = max(0, min(n, r.limit-r.used, r.shareLocked()-r.byProject[project]))
	if n > 0 {
		r.used += n
		r.byProject[project] += n
	}
	return n
}

// holding is how many places project holds.
func (r *room) holding(project string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byProject[project]
}

// want says that a pull of project waits for a place, which lowers the share of the
// others; done says it no longer does.
func (r *room) want(project string) (done func()) {
	r.mu.Lock()
	r.wanting[project]++
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		if r.wanting[project]--; r.wanting[project] == 0 {
			delete(r.wanting, project)
		}
		r.mu.Unlock()
	}
}

// changed returns a channel closed when room frees or the limit grows.
func (r *room) changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.freed
}

// free gives n of project's places back.
func (r *room) free(project string, n int) {
	if n == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.used -= n
	if r.byProject[project] -= n; r.byProject[project] <= 0 {
		delete(r.byProject, project)
	}
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
