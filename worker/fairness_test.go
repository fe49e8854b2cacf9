package worker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/messages"
)

// TestAnotherProjectsBacklogDoesNotDelay: with 5,000 of TeamA's commands queued first,
// on many resources or all on one, a MyProject command published after them finishes
// within a second, with APIOps answering at once or after 50 ms: each project has a
// consumer of its own, and the room and the request slots go to the projects in turn.
func TestAnotherProjectsBacklogDoesNotDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 5,000 commands per case")
	}
	for _, tc := range []struct {
		name      string
		latency   time.Duration
		resources int
	}{
		{"demo simulator, many resources", 0, 1000},
		{"50ms APIOps, many resources", 50 * time.Millisecond, 1000},
		{"50ms APIOps, one resource", 50 * time.Millisecond, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.sim.SetFaults(simulator.Faults{Latency: tc.latency})
			e.start(nil)
			// The worker runs TeamA's first commands before the backlog is all in: a
			// MyProject command published then must still not wait behind the rest.
			e.publishAsync(5000, func(i int) (string, []byte) {
				return "apiops.cmd.TeamA.credential.truststore.set", fmt.Appendf(nil,
					`{"id":"flood-%d","params":{"username":"svc-%d","keystoreName":"team-a-trust"}}`, i, i%tc.resources)
			})
			published := time.Now()
			cmd := e.publishLine([]byte(`{"id":"victim","type":"credential.truststore.set","project":"MyProject","params":{"username":"api-user","keystoreName":"trust-2026"}}`))
			for {
				select {
				case msg := <-e.results:
					r := decodeResult(t, msg)
					if r.ID != cmd.ID {
						continue
					}
					if took := time.Since(published); took > time.Second || r.Status != messages.StatusSucceeded {
						t.Errorf("MyProject's command: %s after %v behind 5,000 of TeamA's", r.Status, took)
					} else {
						t.Logf("MyProject's command finished %v after it was published", took)
					}
					return
				case <-time.After(30 * time.Second):
					t.Fatal("no result for MyProject's command")
				}
			}
		})
	}
}

// publishAsync publishes n commands at once, waiting for every acknowledgement.
func (e *env) publishAsync(n int, command func(i int) (subject string, body []byte)) {
	e.t.Helper()
	for i := range n {
		subject, body := command(i)
		// A loaded machine acknowledges slowly: wait for room among the pending
		// publishes rather than fail after the default 200ms.
		if _, err := e.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: body}, jetstream.WithStallWait(10*time.Second)); err != nil {
			e.t.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		e.t.Fatal("publishing took more than 30s")
	}
}
