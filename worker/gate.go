package worker

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// PauseReason says why the worker stopped taking commands.
type PauseReason string

const (
	Running      PauseReason = ""
	Outage       PauseReason = "outage"       // APIOps unreachable or failing for every command
	Unauthorized PauseReason = "unauthorized" // APIOps refuses the token
)

// gate tracks whether APIOps is usable for one project. When it is not, the worker
// stops taking the project's new commands and those it holds wait, their retry budgets
// untouched, while one of them at a time probes APIOps every RetryMax. Each project has
// a gate of its own (see gates), so that one tenant's failures (a rate limit of its
// own, a permission APIOps withdrew) pause that tenant alone; an APIOps outage pauses
// each project as its commands fail.
type gate struct {
	project   string
	threshold int
	log       *zap.Logger
	clock     Clock
	onChange  func()

	mu       sync.Mutex
	reason   PauseReason
	since    time.Time
	failures int           // transient failures in a row, across commands
	resumed  chan struct{} // closed while running
	paused   chan struct{} // closed while paused
	// probe is a one-slot token: the holder is the one waiting command that probes.
	probe chan struct{}
}

func newGate(project string, threshold int, log *zap.Logger, clock Clock, onChange func()) *gate {
	return &gate{project: project, threshold: threshold, log: log, clock: clock, onChange: onChange,
		resumed: closedChan(), paused: make(chan struct{}), probe: make(chan struct{}, 1)}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// state returns the pause reason, a channel closed when the worker runs and one
// closed when it is paused; both are for the current state only.
func (g *gate) state() (reason PauseReason, resumed, paused <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reason, g.resumed, g.paused
}

// acquire returns at once while the project runs. While it is paused it waits for the
// pause to end, or for its turn to probe: one waiting command of the project at a time
// sends a request, every probeEvery. release hands the probe token back (a no-op for a
// command that did not probe); the caller calls it once, when its request is done.
// err is ctx's when it ended first.
func (g *gate) acquire(ctx context.Context, probeEvery time.Duration) (release func(), err error) {
	for {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		reason, resumed, _ := g.state()
		if reason == Running {
			return noRelease, nil
		}
		select {
		case <-resumed:
			return noRelease, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case g.probe <- struct{}{}:
		}
		select {
		case <-g.clock.After(probeEvery):
			return func() { <-g.probe }, nil
		case <-resumed:
			<-g.probe
			return noRelease, nil
		case <-ctx.Done():
			<-g.probe
			return nil, ctx.Err()
		}
	}
}

func noRelease() {}

// reset forgets a pause whose commands were dropped with a lost lease term: a new
// term starts running, and its first command finds out whether APIOps answers.
func (g *gate) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures = 0
	if g.reason != Running {
		g.resumeLocked()
	}
}

// answered records that APIOps answered (success, or a refusal that is the command's
// fault): it works, so a pause ends.
func (g *gate) answered() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures = 0
	if g.reason == Running {
		return
	}
	g.log.Info("APIOps answers again: resuming", zap.String("project", g.project), zap.String("paused_for", string(g.reason)),
		zap.Duration("paused", g.clock.Now().Sub(g.since)))
	g.resumeLocked()
}

func (g *gate) resumeLocked() {
	g.reason = Running
	close(g.resumed)
	g.paused = make(chan struct{})
	go g.onChange() // it reads every gate's state
}

// transientFailure records a failure that may be APIOps's; it reports whether the
// worker is paused now, in which case the failure is not charged to the command.
func (g *gate) transientFailure(err error) (paused bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures++
	if g.reason == Running && g.failures >= g.threshold {
		g.pauseLocked(Outage, err)
	}
	return g.reason != Running
}

// unauthorized records a 401: the token is bad, for every command.
func (g *gate) unauthorized(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reason != Unauthorized {
		g.pauseLocked(Unauthorized, err)
	}
}

func (g *gate) pauseLocked(reason PauseReason, err error) {
	msg := "APIOps unreachable or failing for every command of the project: pausing it, its commands wait in the stream"
	if reason == Unauthorized {
		msg = "APIOps refuses the token for the project: pausing it, its commands wait in the stream"
	}
	g.log.Error(msg, zap.String("project", g.project), zap.String("reason", string(reason)), zap.Error(err))
	if g.reason == Running {
		g.resumed = make(chan struct{})
		close(g.paused)
		g.since = g.clock.Now()
	}
	g.reason = reason
	go g.onChange()
}

// gates are the projects' gates, made as projects appear.
type gates struct {
	threshold int
	log       *zap.Logger
	clock     Clock
	observe   func(PauseReason)

	mu       sync.Mutex
	byName   map[string]*gate
	reported PauseReason // what observe was last told
}

func newGates(threshold int, log *zap.Logger, clock Clock, observe func(PauseReason)) *gates {
	return &gates{threshold: threshold, log: log, clock: clock, observe: observe, byName: make(map[string]*gate)}
}

// of returns the project's gate.
func (gs *gates) of(project string) *gate {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g := gs.byName[project]
	if g == nil {
		g = newGate(project, gs.threshold, gs.log, gs.clock, gs.changed)
		gs.byName[project] = g
	}
	return g
}

// state is the worker's pause state: Unauthorized while some project is paused for its
// token, else Outage while some is paused for an outage, else Running; and whether every
// project in held is paused, which makes the worker not ready.
func (gs *gates) state(held func(project string) bool) (reason PauseReason, all bool) {
	gs.mu.Lock()
	list := make([]*gate, 0, len(gs.byName))
	for _, g := range gs.byName {
		list = append(list, g)
	}
	gs.mu.Unlock()
	all, any := true, false
	for _, g := range list {
		r, _, _ := g.state()
		if r == Unauthorized || r == Outage && reason == Running {
			reason = r
		}
		if held != nil && held(g.project) {
			any = true
			all = all && r != Running
		}
	}
	return reason, any && all
}

// changed tells the observer the worker's pause state when it changed.
func (gs *gates) changed() {
	reason, _ := gs.state(nil)
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if reason != gs.reported {
		gs.reported = reason
		gs.observe(reason)
	}
}

// reset resumes every gate: see gate.reset.
func (gs *gates) reset() {
	gs.mu.Lock()
	list := make([]*gate, 0, len(gs.byName))
	for _, g := range gs.byName {
		list = append(list, g)
	}
	gs.mu.Unlock()
	for _, g := range list {
		g.reset()
	}
}
