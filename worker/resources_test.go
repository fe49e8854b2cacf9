package worker

import (
	"slices"
	"testing"
)

func keyed(seq uint64, keys ...string) *task { return &task{seq: seq, keys: keys} }

func seqs(ts []*task) []uint64 {
	var out []uint64
	for _, t := range ts {
		out = append(out, t.seq)
	}
	return out
}

// TestResourcesNeverWaitInACycle: the cases that deadlocked when a command took a free
// resource while still waiting for another.
func TestResourcesNeverWaitInACycle(t *testing.T) {
	t.Run("a redelivered plan arrives after a later plan queued", func(t *testing.T) {
		r := newResources()
		x := keyed(20, "A")
		later := keyed(30, "A", "B")
		redelivered := keyed(10, "A", "B")
		if !r.enqueue(x) || r.enqueue(later) || r.enqueue(redelivered) {
			t.Fatal("only x may start")
		}
		if got := seqs(r.release(x)); !slices.Equal(got, []uint64{10}) {
			t.Fatalf("after x: %v start, want the redelivered plan", got)
		}
		if got := seqs(r.release(redelivered)); !slices.Equal(got, []uint64{30}) {
			t.Fatalf("after the redelivered plan: %v start, want the later plan", got)
		}
		if got := r.release(later); len(got) != 0 || len(r.queues) != 0 {
			t.Fatalf("left over: %v, queues %v", seqs(got), r.queues)
		}
	})
	t.Run("the same plan delivered twice while it waits", func(t *testing.T) {
		r := newResources()
		x := keyed(5, "A")
		first := keyed(10, "A", "B")
		again := keyed(10, "A", "B")
		r.enqueue(x)
		r.enqueue(first)
		r.enqueue(again)
		started := r.release(x)
		if len(started) != 1 {
			t.Fatalf("%d copies started", len(started))
		}
		if next := r.release(started[0]); len(next) != 1 || r.release(next[0]) != nil {
			t.Fatal("the second copy did not run after the first")
		}
	})
	t.Run("independent resources run at once", func(t *testing.T) {
		r := newResources()
		if !r.enqueue(keyed(1, "A")) || !r.enqueue(keyed(2, "B")) {
			t.Fatal("commands for different resources must not wait for each other")
		}
		plan := keyed(3, "A", "B")
		if r.enqueue(plan) {
			t.Fatal("a plan started while its resources were held")
		}
		if r.enqueue(keyed(4, "B")); len(r.queues["B"].waiting) != 2 {
			t.Fatal("a later command for B is not behind the plan")
		}
	})
}
