package worker_test

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

// buildWorker compiles cmd/apiops-worker for tests that run it as a process.
func buildWorker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "apiops-worker")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/apiops-worker")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build apiops-worker: %v\n%s", err, out)
	}
	return bin
}

// TestKilledMidBatchLosesNothing kills the worker process with SIGKILL while it works
// through a batch, restarts it, and checks that every command ends with exactly one
// stored result.
func TestKilledMidBatchLosesNothing(t *testing.T) {
	t.Parallel() // waits for a lease to lapse: CPU is idle meanwhile
	if testing.Short() {
		t.Skip("builds and runs the worker binary")
	}
	bin := buildWorker(t)
	e := newEnv(t)
	e.sim.SetFaults(simulator.Faults{Latency: 5 * time.Millisecond})
	const n = 300
	first, _ := e.startProcess(bin, []string{"APIOPS_TOKEN=sim-token"})
	for _, line := range credentialCommands(n, "crash") {
		e.publishLine(line)
	}
	seen := map[string]bool{}
	for len(seen) < n/3 {
		select {
		case msg := <-e.results:
			seen[decodeResult(t, msg).ID] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d results before the kill", len(seen))
		}
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	_, logs := e.startProcess(bin, []string{"APIOPS_TOKEN=sim-token"})
	for len(seen) < n {
		select {
		case msg := <-e.results:
			seen[decodeResult(t, msg).ID] = true
		case <-time.After(60 * time.Second):
			t.Fatalf("%d of %d commands finished after the restart; logs:\n%s", len(seen), n, logs.String())
		}
	}
	eventually(t, 10*time.Second, "every command acknowledged", func() bool { return e.pending() == 0 })
	stored := map[string]int{}
	for _, m := range e.streamMsgs("APIOPS_RESULTS") {
		r := decodeResult(t, natsMsg(m))
		stored[r.ID]++
		if r.Status != "succeeded" {
			t.Errorf("%s: %s", r.ID, r.raw)
		}
	}
	if len(stored) != n {
		t.Errorf("%d distinct results stored, want %d", len(stored), n)
	}
	for id, count := range stored {
		if count != 1 {
			t.Errorf("%s has %d stored results", id, count)
		}
	}
}
