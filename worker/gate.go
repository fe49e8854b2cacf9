package worker

import (
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

// gate tracks whether APIOps is usable. When it is not, the worker stops taking new
// commands and the commands it holds wait, their retry budgets untouched, while one of
// them at a time probes APIOps every RetryMax.
type gate struct {
	threshold int
	log       *zap.Logger
	clock     Clock
	onChange  func(PauseReason)

	mu       sync.Mutex
	reason   PauseReason
	since    time.Time
	failures int           // transient failures in a row, across commands
	resumed  chan struct{} // closed while running
	paused   chan struct{} // closed while paused
	// probe is a one-slot token: the holder is the one waiting command that probes.
	probe chan struct{}
}

func newGate(threshold int, log *zap.Logger, clock Clock, onChange func(PauseReason)) *gate {
	return &gate{threshold: threshold, log: log, clock: clock, onChange: onChange,
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
	g.log.Info("APIOps answers again: resuming", zap.String("paused_for", string(g.reason)), zap.Duration("paused", g.clock.Now().Sub(g.since)))
	g.resumeLocked()
}

func (g *gate) resumeLocked() {
	g.reason = Running
	close(g.resumed)
	g.paused = make(chan struct{})
	g.onChange(Running)
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
	msg := "APIOps unreachable or failing for every command: pausing, commands wait in the stream"
	if reason == Unauthorized {
		msg = "APIOps refuses the token: pausing, commands wait in the stream; re-reading the token file"
	}
	g.log.Error(msg, zap.String("reason", string(reason)), zap.Error(err))
	if g.reason == Running {
		g.resumed = make(chan struct{})
		close(g.paused)
		g.since = g.clock.Now()
	}
	g.reason = reason
	g.onChange(reason)
}
