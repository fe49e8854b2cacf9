package chaos

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFrozenHolderThaws plays, in a fixed order, the path an outside harness found to
// break per-resource order: the active instance is frozen while commands keep
// arriving, another takes over, the frozen one thaws and is then cut off; in every
// other cycle the consumers' leaders step down between the takeover and the thaw.
// Commands go to a few resources a little faster than the fleet (two requests at a
// time) runs them, so that the active instance holds all it may when it is frozen,
// and has room again, for a pull, the moment it thaws. The thawed instance may take
// commands it must not run; none may run after a later command for its resource.
func TestFrozenHolderThaws(t *testing.T) {
	cycles := 2 // one cycle of each kind: with and without the leaders stepping down
	if *full {
		cycles = 8
	}
	run := startFleet(t, resourcesFor(4), "--concurrency", "2")
	published := make(chan int)
	go func() { published <- run.publish(0, 15*time.Millisecond) }()
	for i := range cycles {
		run.freezeThawCut(i%2 == 1)
	}
	close(run.stopBursts)
	run.finish(<-published)
}

// freezeThawCut freezes the active worker, waits until another one runs commands,
// steps the consumers' leaders down if asked, thaws the frozen one, and cuts it off
// from the cluster a second later for longer than AckWait.
func (r *chaosRun) freezeThawCut(stepdown bool) {
	r.awaitServing(30 * time.Second)
	target := r.active()
	hit := target.instance()
	freeze := fault{kind: freezeWorker, target: fmt.Sprintf("worker %d", target.n), hit: hit, at: time.Now()}
	target.signal(syscall.SIGSTOP)
	r.watchTakeover(&freeze, hit, func() {})
	freeze.resumed = r.nextRequestAfter(freeze.at, hit, 60*time.Second)
	r.record(freeze)
	if stepdown {
		names := r.commandConsumers()
		step := fault{kind: consumerStepdown, target: strings.Join(names, ","), at: time.Now()}
		for _, name := range names {
			r.stepdown("$JS.API.CONSUMER.LEADER.STEPDOWN.APIOPS_COMMANDS." + name)
		}
		step.resumed = r.nextRequestAfter(step.at, "", 60*time.Second)
		r.record(step)
	}
	target.signal(syscall.SIGCONT)
	time.Sleep(time.Second) // the thawed worker's second on NATS: whatever it does then is under test
	// No hit: the thawed worker is fenced, so no request of its may reach APIOps after
	// the thaw, and the cut explains none.
	cut := fault{kind: cutWorker, target: fmt.Sprintf("worker %d (thawed)", target.n), at: time.Now()}
	for _, p := range target.proxies {
		p.Cut()
	}
	cut.resumed = r.nextRequestAfter(cut.at, hit, 60*time.Second)
	time.Sleep(6 * time.Second) // longer than AckWait: what it held comes back meanwhile
	for _, p := range target.proxies {
		p.Heal()
	}
	r.record(cut)
}

func (r *chaosRun) record(f fault) {
	r.mu.Lock()
	r.done = append(r.done, f)
	r.mu.Unlock()
	r.t.Logf("%-42s %-16s takeover %-8v APIOps again after %v", f.kind, f.target, f.takeover.Round(100*time.Millisecond), f.resumed.Round(100*time.Millisecond))
}
