package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/messages"
)

// figures are what a run came to; every count but the duplicate calls must be zero.
type figures struct {
	Commands, Resources, Faults int
	ByKind                      map[faultKind]int
	PublishRetries              int
	Lost, DuplicateResults      int
	NotSucceeded                int
	DuplicateCalls, CallBudget  int
	UnexplainedDuplicates       int
	OrderViolations             int
	FinalMismatches             int
	Overlaps                    int
	NonJSONLogLines             int
	Takeover, Resumed           map[faultKind][]time.Duration
}

// check reads every stored result and every APIOps request and reports the figures.
func (r *chaosRun) check(commands int) {
	t := r.t
	r.mu.Lock()
	lastOf, done, retries := r.lastOf, r.done, r.retries
	r.mu.Unlock()
	f := figures{Commands: commands, Resources: len(r.resources), Faults: len(done), ByKind: map[faultKind]int{},
		PublishRetries: retries, Takeover: map[faultKind][]time.Duration{}, Resumed: map[faultKind][]time.Duration{}}
	for _, d := range done {
		f.ByKind[d.kind]++
		if d.kind == killWorker || d.kind == cutWorker || d.kind == freezeWorker {
			f.CallBudget++
		}
		if d.takeover > 0 {
			f.Takeover[d.kind] = append(f.Takeover[d.kind], d.takeover)
		}
		f.Resumed[d.kind] = append(f.Resumed[d.kind], d.resumed)
	}

	results := r.readResults()
	for i := range commands {
		id := fmt.Sprintf("c-%d", i)
		rs := results[id]
		switch {
		case len(rs) == 0:
			f.Lost++
			t.Errorf("lost: %s was acknowledged by JetStream but has no result", id)
		case len(rs) > 1:
			f.DuplicateResults += len(rs) - 1
			t.Errorf("%d results for %s", len(rs), id)
		}
		for _, res := range rs {
			if res.Status != messages.StatusSucceeded {
				f.NotSucceeded++
				t.Errorf("%s: %s %+v", id, res.Status, res.Error)
			}
		}
	}

	arrivals, overlaps, state := r.ledger.snapshot()
	calls := make(map[int]int)
	first := make(map[int]arrival)
	highest := make(map[string]int)
	for _, a := range arrivals {
		calls[a.index]++
		if calls[a.index] == 1 {
			first[a.index] = a
		}
		if prev, seen := highest[a.resource]; seen && a.index < prev {
			f.OrderViolations++
			t.Errorf("order: command %d reached APIOps for %s after command %d, at %s", a.index, a.resource, prev, a.at.Format(time.TimeOnly+".000"))
		}
		highest[a.resource] = max(highest[a.resource], a.index)
	}
	for i, n := range calls {
		if n == 1 {
			continue
		}
		f.DuplicateCalls += n - 1
		if why := explain(first[i], done); why != "" {
			t.Logf("command %d reached APIOps %d times: first sent by %s", i, n, why)
			continue
		}
		f.UnexplainedDuplicates += n - 1
		t.Errorf("command %d reached APIOps %d times, first from %s at %s, which no fault had hit: an instance ran a command another one also ran",
			i, n, first[i].instance, first[i].at.Format(time.TimeOnly+".000"))
	}
	for i := range commands {
		if calls[i] == 0 && len(results[fmt.Sprintf("c-%d", i)]) > 0 {
			t.Errorf("command %d has a result but never reached APIOps", i)
		}
	}

	for resource, last := range lastOf {
		if state[resource] != last {
			f.FinalMismatches++
			t.Errorf("final state: %s holds command %d's value, but the last published was %d", resource, state[resource], last)
		}
	}
	f.Overlaps = len(overlaps)
	for _, o := range overlaps {
		t.Errorf("overlap: two requests at once for %s", o)
	}
	for _, w := range r.workers {
		bad := w.nonJSONLines()
		f.NonJSONLogLines += len(bad)
		for _, line := range bad {
			t.Errorf("worker %d wrote a line past its logger: %q", w.n, line)
		}
	}
	t.Log(f.report())
}

func (r *chaosRun) readResults() map[string][]messages.Result {
	t := r.t
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, _ := jetstream.New(r.admin)
	stream, err := js.Stream(ctx, "APIOPS_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]messages.Result)
	for read := uint64(0); read < info.State.Msgs; {
		batch, err := consumer.Fetch(int(min(info.State.Msgs-read, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			read++
			var res messages.Result
			if err := json.Unmarshal(msg.Data(), &res); err != nil {
				t.Errorf("result %s: %v", msg.Data(), err)
				continue
			}
			out[res.ID] = append(out[res.ID], res)
		}
		// The cluster may still be electing a leader after the last fault: the ordered
		// consumer resumes after the last message read, until the minute is up.
		if err := batch.Error(); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("read the results (%d of %d read): %v", read, info.State.Msgs, err)
			}
			time.Sleep(100 * time.Millisecond) // paces the retries
		}
	}
	return out
}

func (f figures) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d commands over %d resources, %d faults, %d publish retries\n", f.Commands, f.Resources, f.Faults, f.PublishRetries)
	fmt.Fprintf(&b, "lost %d | duplicate results %d | not succeeded %d | order violations %d | final-state mismatches %d | overlapping requests %d | non-JSON log lines %d\n",
		f.Lost, f.DuplicateResults, f.NotSucceeded, f.OrderViolations, f.FinalMismatches, f.Overlaps, f.NonJSONLogLines)
	fmt.Fprintf(&b, "duplicate APIOps calls %d (kills+cuts+freezes %d), each a request its sender had made before the fault hit it; unexplained %d\n",
		f.DuplicateCalls, f.CallBudget, f.UnexplainedDuplicates)
	for _, kind := range faultKinds {
		fmt.Fprintf(&b, "  %-42s x%d  another worker active after %-28s APIOps again after %s\n", kind, f.ByKind[kind],
			spread(f.Takeover[kind]), spread(f.Resumed[kind]))
	}
	return b.String()
}

// explain says which fault a command's first request was caught by, or "" when none
// was: a request may be repeated only if its sender was killed or frozen after sending
// it, or cut off before its fence (the lease's 3 s) stopped it from sending.
func explain(a arrival, faults []fault) string {
	const sendSlack = 200 * time.Millisecond // sent before the fault, seen by APIOps just after
	for _, f := range faults {
		if f.hit == "" || !strings.Contains(a.instance, f.hit) {
			continue
		}
		allowed := sendSlack
		if f.kind == cutWorker {
			allowed += 3 * time.Second
		}
		// A request sent longer before the fault had its answer, and its outcome
		// stored, before the fault hit.
		if a.at.Before(f.at.Add(allowed)) && a.at.After(f.at.Add(-2*time.Second)) {
			return fmt.Sprintf("%s, %v before %s", f.hit, f.at.Sub(a.at).Round(time.Millisecond), f.kind)
		}
	}
	return ""
}

// spread prints durations as min / median / max.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	r := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	return r(ds[0]) + " / " + r(ds[len(ds)/2]) + " / " + r(ds[len(ds)-1])
}
