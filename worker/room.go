package worker

import "sync"

// room counts the commands the worker holds against a limit of 4×Concurrency: with
// APIOps answering at once, a command spends most of its time in NATS round trips
// (looking up, storing, publishing) outside a request slot, and a room of
// 2×Concurrency left slots idle. Each project may hold at most its share of the limit,
// split among the projects that hold or wait for places, so that a project with a
// backlog leaves room for the others' commands. A project whose consumer is behind a
// barrier (see takeover.go) is lifted out of the limit: it may hold as many commands
// as its consumer lets be unacknowledged, so that every command still out can come
// back to it, and its places take nothing from the others.
type room struct {
	mu        sync.Mutex
	used      int // places held by projects not lifted
	limit     int
	byProject map[string]int // places held
	wanting   map[string]int // pulls waiting for a place
	lifted    map[string]int // lifted projects: the places each may hold
	freed     chan struct{}  // closed and replaced when room frees or the limit grows
}

func newRoom(limit int) *room {
	return &room{limit: limit, byProject: make(map[string]int), wanting: make(map[string]int), lifted: make(map[string]int),
		freed: make(chan struct{})}
}

// shareLocked is how many places project, not lifted, may hold now: the limit split
// among it and the other projects that hold or want places and are not lifted.
func (r *room) shareLocked(project string) int {
	active := 0
	counts := func(p string) bool {
		_, lifted := r.lifted[p]
		return !lifted && p != project
	}
	for p := range r.byProject {
		if counts(p) {
			active++
		}
	}
	for p := range r.wanting {
		if counts(p) && r.byProject[p] == 0 {
			active++
		}
	}
	active++ // project
	return max(1, (r.limit+active-1)/active)
}

// take takes up to n places for project that are free now, within its share, and
// returns how many it took.
func (r *room) take(project string, n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if most, lifted := r.lifted[project]; lifted {
		n = max(0, min(n, most-r.byProject[project]))
		r.byProject[project] += n
		return n
	}
	n = max(0, min(n, r.limit-r.used, r.shareLocked(project)-r.byProject[project]))
	if n > 0 {
		r.used += n
		r.byProject[project] += n
	}
	return n
}

// lift lets project hold up to most places outside the limit, until unlift.
func (r *room) lift(project string, most int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, lifted := r.lifted[project]; !lifted {
		r.used -= r.byProject[project]
	}
	r.lifted[project] = most
	r.notifyLocked()
}

// unlift puts project back under the limit; places it holds above its share stay
// taken until freed.
func (r *room) unlift(project string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, lifted := r.lifted[project]; lifted {
		delete(r.lifted, project)
		r.used += r.byProject[project]
		r.notifyLocked()
	}
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
	if _, lifted := r.lifted[project]; !lifted {
		r.used -= n
	}
	if r.byProject[project] -= n; r.byProject[project] <= 0 {
		delete(r.byProject, project)
	}
	r.notifyLocked()
}

func (r *room) notifyLocked() {
	close(r.freed)
	r.freed = make(chan struct{})
}
