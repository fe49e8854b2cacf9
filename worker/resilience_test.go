package worker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// credentialCommands returns n truststore sets spread over the seeded credentials.
func credentialCommands(n int, prefix string) [][]byte {
	users := []string{"api-user", "partner-a", "partner-b"}
	stores := []string{"trust-2025", "trust-2026", "client-2025", "client-2026"}
	var out [][]byte
	for i := range n {
		out = append(out, fmt.Appendf(nil, `{"id":"%s-%03d","type":"credential.truststore.set","project":"MyProject","params":{"username":"%s","keystoreName":"%s"}}`,
			prefix, i, users[i%len(users)], stores[i%len(stores)]))
	}
	return out
}

func requireAllSucceeded(t *testing.T, e *env, results map[string]*result) {
	t.Helper()
	for id, r := range results {
		if r.Status != messages.StatusSucceeded {
			t.Errorf("%s: %s", id, r.raw)
		}
	}
	if n := len(e.streamMsgs("APIOPS_DEAD")); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

func TestErrorStormsRetriedToSuccess(t *testing.T) {
	e := newEnv(t)
	e.cfg.MaxAttempts = 50
	e.sim.SetFaults(simulator.Faults{ErrorRate: 0.4, ErrorStatus: 503})
	e.start(nil)
	for _, line := range credentialCommands(40, "storm") {
		e.publishLine(line)
	}
	results := e.awaitResults(40, 60*time.Second)
	requireAllSucceeded(t, e, results)
	retried := 0
	for _, r := range results {
		if r.Attempts > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Error("no command was retried: the storm did not happen")
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t)
	e.sim.FailNext(2, 429, time.Second)
	e.start(nil)
	cmd := e.publishLine(readExample(t, "credential.privatekey.set"))
	res := e.awaitResults(1, 20*time.Second)[cmd.ID]
	if res.Status != messages.StatusSucceeded || res.Attempts != 3 {
		t.Fatalf("result %s", res.raw)
	}
	if took := res.FinishedAt.Sub(res.ReceivedAt); took < 2*time.Second {
		t.Errorf("finished after %v: Retry-After of 1s twice was not honoured", took)
	}
}

func TestOutageThenRecoveryLosesNothing(t *testing.T) {
	e := newEnv(t)
	e.cfg.MaxAttempts, e.cfg.OutageThreshold = 2, 2 // an outage must not use up budgets
	w := e.start(nil)
	e.sim.Down(time.Hour)
	for _, line := range credentialCommands(30, "outage") {
		e.publishLine(line)
	}
	eventually(t, 10*time.Second, "the worker to pause", func() bool { return w.Paused() == worker.Outage })
	if err := w.Ready(); err == nil {
		t.Error("ready while paused")
	}
	// Several probes fail before APIOps comes back; none may count against a budget.
	probes := func() int { return len(e.sim.Requests()) }
	before := probes()
	eventually(t, 10*time.Second, "three probes", func() bool { return probes() >= before+3 })
	if n := probes() - before; n > 4 {
		t.Errorf("%d requests while paused: only one command at a time may probe", n)
	}
	e.sim.Down(0)
	results := e.awaitResults(30, 30*time.Second)
	requireAllSucceeded(t, e, results)
	if w.Paused() != worker.Running || w.Ready() != nil {
		t.Errorf("not running after recovery: %v %v", w.Paused(), w.Ready())
	}
	logs := e.logs.String()
	if p, r := strings.Count(logs, "pausing"), strings.Count(logs, "resuming"); p != 1 || r != 1 {
		t.Errorf("%d pause and %d resume lines, want one each:\n%s", p, r, logs)
	}
}

func TestTokenFileReplacedWhileRunning(t *testing.T) {
	e := newEnv(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("expired-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens := apiops.NewFileToken(tokenFile)
	e.cfg.MaxAttempts, e.cfg.OutageThreshold = 1, 1
	w := e.start(tokens)
	for _, line := range credentialCommands(10, "rotate") {
		e.publishLine(line)
	}
	eventually(t, 10*time.Second, "the worker to pause for the token", func() bool { return w.Paused() == worker.Unauthorized })
	if err := os.WriteFile(tokenFile, []byte("  sim-token \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// FileToken trusts its copy for 10s: finishing much sooner proves the worker
	// re-read the file when it probed.
	results := e.awaitResults(10, 5*time.Second)
	requireAllSucceeded(t, e, results)
	if w.Paused() != worker.Running {
		t.Errorf("still paused: %v", w.Paused())
	}
	if strings.Contains(e.logs.String(), "sim-token") || strings.Contains(e.logs.String(), "expired-token") {
		t.Error("a token reached the logs")
	}
}

func TestGracefulShutdownHandsWorkBack(t *testing.T) {
	e := newEnv(t)
	e.cfg.Concurrency = 2
	e.cfg.ShutdownTimeout = 100 * time.Millisecond
	e.sim.SetFaults(simulator.Faults{Latency: time.Second})
	e.start(nil)
	lines := credentialCommands(12, "shutdown")
	for _, line := range lines {
		e.publishLine(line)
	}
	eventually(t, 10*time.Second, "commands in flight", func() bool { return len(e.sim.Requests()) >= 2 })
	e.stop() // in flight longer than the timeout: canceled and handed back with the rest
	if n := e.pending(); n != uint64(len(lines))-uint64(len(e.results)) {
		t.Errorf("%d commands in the stream, %d results: some were lost", n, len(e.results))
	}
	e.sim.SetFaults(simulator.Faults{})
	e.start(nil)
	results := e.awaitResults(len(lines), 30*time.Second)
	requireAllSucceeded(t, e, results)
}

func TestShutdownLetsInFlightFinish(t *testing.T) {
	e := newEnv(t)
	e.cfg.Concurrency = 2
	e.sim.SetFaults(simulator.Faults{Latency: 300 * time.Millisecond})
	e.start(nil)
	for _, line := range credentialCommands(10, "drain") {
		e.publishLine(line)
	}
	eventually(t, 10*time.Second, "commands in flight", func() bool { return len(e.sim.Requests()) >= 1 })
	e.stop()
	finished := len(e.results)
	if finished == 0 {
		t.Fatal("the commands in flight did not finish within the shutdown timeout")
	}
	// The last acknowledgements are sent without waiting for the server to apply them.
	eventually(t, 5*time.Second, fmt.Sprintf("%d pending after %d finished", 10-finished, finished),
		func() bool { return e.pending() == uint64(10-finished) })
	for _, r := range e.sim.Requests() {
		if r.Status == 0 {
			t.Errorf("a request was cut off: %+v", r)
		}
	}
}

func TestSameResourceOrderUnderRetries(t *testing.T) {
	e := newEnv(t)
	e.sim.FailNext(3, 503, 0)
	e.start(nil)
	stores := []string{"trust-2025", "trust-2026", "client-2025", "client-2026", "shared-trust-root"}
	var lines [][]byte
	for round := range 4 {
		for _, user := range []string{"api-user", "partner-a"} {
			for i, ks := range stores {
				lines = append(lines, fmt.Appendf(nil, `{"id":"order-%d-%s-%d","type":"credential.truststore.set","project":"MyProject","params":{"username":"%s","keystoreName":"%s"}}`, round, user, i, user, ks))
			}
		}
	}
	for _, line := range lines {
		e.publishLine(line)
	}
	e.awaitResults(len(lines), 30*time.Second)
	got := map[string][]string{}
	for _, r := range e.sim.Requests() {
		if r.Status != 200 {
			continue
		}
		parts := strings.Split(strings.Trim(r.Path, "/"), "/") // apiops/projects/P/credentials/<user>/truststore/<ks>
		got[parts[4]] = append(got[parts[4]], parts[6])
	}
	for _, user := range []string{"api-user", "partner-a"} {
		var want []string
		for range 4 {
			want = append(want, stores...)
		}
		if strings.Join(got[user], ",") != strings.Join(want, ",") {
			t.Errorf("%s: APIOps saw %v, want %v", user, got[user], want)
		}
	}
	if c, _ := e.sim.Credential("MyProject", "api-user"); c.Truststore != "shared-trust-root" {
		t.Errorf("final truststore %q", c.Truststore)
	}
}

func TestSetupWithoutManagingStreams(t *testing.T) {
	e := newEnv(t)
	e.cfg.ManageStreams = false
	client, _ := apiops.New(e.apiURL, apiops.StaticToken("sim-token"))
	w, err := worker.New(e.nc, client, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = w.Setup(context.Background())
	if err == nil || !strings.Contains(err.Error(), "APIOPS_COMMANDS") {
		t.Fatalf("Setup without streams = %v, want an error naming the stream", err)
	}
	e.cfg.ManageStreams = true
	e.start(nil)
	e.stop()
	e.cfg.ManageStreams = false
	e.start(nil)
	cmd := e.publishLine(readExample(t, "credential.truststore.set"))
	if r := e.awaitResults(1, 10*time.Second)[cmd.ID]; r.Status != messages.StatusSucceeded {
		t.Errorf("result %s", r.raw)
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		change func(*worker.Config)
		want   string
	}{
		{func(c *worker.Config) { c.Concurrency = -1 }, "concurrency"},
		{func(c *worker.Config) { c.MaxAttempts = -2 }, "max-attempts"},
		{func(c *worker.Config) { c.RetryInitial, c.RetryMax = time.Second, time.Millisecond }, "retry-max"},
		{func(c *worker.Config) { c.Prefix = "a.*" }, "prefix"},
	} {
		cfg := e.cfg
		tc.change(&cfg)
		if _, err := worker.New(e.nc, nil, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v does not name %s", err, tc.want)
		}
	}
}
