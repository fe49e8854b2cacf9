package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

func (e *env) consumerInfo() (ackPending int, redelivered int) {
	e.t.Helper()
	c, err := e.js.Consumer(context.Background(), worker.DefaultCommandStream, worker.ProjectConsumer(worker.DefaultConsumer, "MyProject"))
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.NumAckPending, info.NumRedelivered
}

// TestHeldCommandsKeptAlive runs a command longer than AckWait: InProgress must keep
// JetStream from redelivering it meanwhile.
func TestHeldCommandsKeptAlive(t *testing.T) {
	e := newEnv(t)
	e.cfg.AckWait = time.Second
	e.cfg.Concurrency = 1
	e.sim.SetFaults(simulator.Faults{Latency: 1500 * time.Millisecond})
	e.start(nil)
	for _, line := range credentialCommands(2, "slow") { // the second waits its turn
		e.publishLine(line)
	}
	e.awaitResults(2, 15*time.Second)
	if _, redelivered := e.consumerInfo(); redelivered != 0 {
		t.Errorf("%d commands redelivered while held", redelivered)
	}
	if n := e.apiopsRequests(); n != 2 {
		t.Errorf("APIOps saw %d requests for 2 commands", n)
	}
}

// TestTwoInstancesNeverRunACommandTwice shares the consumer between two workers whose
// commands outlast AckWait.
func TestTwoInstancesNeverRunACommandTwice(t *testing.T) {
	t.Parallel() // waits on leases and NATS: CPU is idle meanwhile
	e := newEnv(t)
	e.cfg.AckWait = time.Second
	e.cfg.Concurrency = 4
	e.sim.SetFaults(simulator.Faults{Latency: 1200 * time.Millisecond})
	e.start(nil)
	client, _ := apiops.New(e.apiURL, apiops.StaticToken("sim-token"))
	second, err := worker.New(e.nc, client, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- second.Run(ctx) }()
	defer func() { cancel(); <-stopped }()
	const n = 24
	for i := range n {
		e.publishLine(fmt.Appendf(nil, `{"id":"pair-%d","type":"credential.truststore.set","project":"MyProject","params":{"username":"api-user-%d","keystoreName":"x"}}`, i, i))
	}
	e.awaitResults(n, 30*time.Second)
	if got := e.apiopsRequests(); got != n {
		t.Errorf("APIOps saw %d requests for %d commands", got, n)
	}
}

// TestShutdownHandsOverAtOnce: at shutdown the active instance lets the command in
// flight finish, hands the unstarted ones back and releases its lease, and a standby
// takes over at once: the lease and AckWait are far longer than this test waits, so
// only the handover can deliver the commands.
func TestShutdownHandsOverAtOnce(t *testing.T) {
	e := newEnv(t)
	e.cfg.Concurrency = 1
	e.cfg.ShutdownTimeout = 10 * time.Second
	e.cfg.LeaseTimeout = time.Minute
	e.cfg.AckWait = time.Minute
	slow := make(chan struct{}, 1)
	var requests atomic.Int32
	e.mu.Lock()
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		if requests.Add(1) == 1 { // the first command is slow
			slow <- struct{}{}
			time.Sleep(time.Second)
		}
		return false
	}
	e.mu.Unlock()
	first := e.start(nil)
	client, _ := apiops.New(e.apiURL, apiops.StaticToken("sim-token"))
	second, _ := worker.New(e.nc, client, e.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- second.Run(ctx) }()
	stopSecond := sync.OnceFunc(func() { cancel(); <-stopped })
	defer stopSecond()
	// One resource, so the commands run in stream order and the last two wait behind
	// the slow first one.
	for i := range 3 {
		e.publishLine(fmt.Appendf(nil, `{"id":"unstarted-%d","type":"credential.truststore.set","project":"MyProject","params":{"username":"user-0","keystoreName":"x"}}`, i))
	}
	select {
	case <-slow:
	case <-time.After(5 * time.Second):
		t.Fatal("the first command did not start")
	}
	// Either may have taken the lease first.
	standby, stopActive := second, e.stop
	if second.Active() {
		standby, stopActive = first, stopSecond
	}
	if standby.Active() {
		t.Fatal("both instances active")
	}
	stopActive()
	got := e.awaitResults(3, 10*time.Second)
	if r := got["unstarted-0"]; r == nil || r.Attempts != 1 {
		t.Errorf("the command in flight did not finish: %v", r)
	}
	if !standby.Active() {
		t.Error("the standby did not take over")
	}
	if n := e.apiopsRequests(); n != 3 {
		t.Errorf("%d APIOps requests, want 3", n)
	}
}

// TestNotAfterPassesWhilePaused: a command waiting out a pause expires when its
// notAfter passes before it could make a request.
func TestNotAfterPassesWhilePaused(t *testing.T) {
	e := newEnv(t)
	tokenFile := filepath.Join(t.TempDir(), "missing-token")
	e.start(apiops.NewFileToken(tokenFile))
	line := withField(t, readExample(t, "credential.truststore.set"), "notAfter", time.Now().Add(700*time.Millisecond).UTC().Format(time.RFC3339Nano))
	cmd := e.publishLine(line)
	res := e.awaitResults(1, 10*time.Second)[cmd.ID]
	if res.Status != messages.StatusExpired || res.Attempts != 0 {
		t.Errorf("result %s", res.raw)
	}
	if e.apiopsRequests() != 0 {
		t.Error("APIOps was called")
	}
	_ = os.Remove(tokenFile)
}

// TestInvalidCopyOfAFinishedIDChangesNothing: an invalid message reusing a finished id
// is rejected as id_reused, naming its faulty field (the stored success would tell its
// publisher it ran), and leaves the id's stored result as it was.
func TestInvalidCopyOfAFinishedIDChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	valid := readExample(t, "credential.truststore.set")
	cmd := e.publishLine(valid)
	e.awaitResults(1, 10*time.Second)
	inbox := messages.ReplyInbox("MyProject") + nuid.Next()
	replies, _ := e.nc.SubscribeSync(inbox)
	broken := withField(t, withField(t, valid, "replyTo", inbox), "extra", true)
	e.publish("MyProject", cmd.Type, "", broken)
	reply, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeResult(t, reply); r.Status != messages.StatusRejected || r.Error == nil || r.Error.Code != messages.CodeIDReused || r.Error.Field != "extra" {
		t.Errorf("reply %s, want id_reused naming extra", reply.Data)
	}
	e.publish("MyProject", cmd.Type, "", withField(t, valid, "replyTo", inbox))
	reply, err = replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeResult(t, reply); r.Status != messages.StatusSucceeded || !r.Replayed {
		t.Errorf("the stored result was overwritten: %s", reply.Data)
	}
	if n := len(e.streamMsgs("APIOPS_DEAD")); n != 1 {
		t.Errorf("%d dead letters, want the rejection's", n)
	}
}

// TestReplyToOutsideTheProjectsInboxRejected: a reply must not pose as a command or
// result, nor land in another project's inbox.
func TestReplyToOutsideTheProjectsInboxRejected(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	for i, replyTo := range []string{"apiops.cmd.TeamA.keystore.delete", "_INBOX.TeamA.x", "$KV.APIOPS_IDEMPOTENCY.lease.x"} {
		e.publish("MyProject", "keystore.delete", "", withField(t, withField(t, readExample(t, "keystore.delete"), "id", fmt.Sprint("reply-", i)), "replyTo", replyTo))
	}
	for id, res := range e.awaitResults(3, 10*time.Second) {
		if res.Status != messages.StatusRejected || res.Error.Field != "replyTo" {
			t.Errorf("%s: result %s", id, res.raw)
		}
	}
	eventually(t, 5*time.Second, "the commands acknowledged", func() bool { return e.pending() == 0 })
	if e.apiopsRequests() != 0 {
		t.Error("APIOps was called")
	}
}

// TestConsumerDeletedIsSetUpAgain: the worker notices a project's consumer is gone and
// sets it up again.
func TestConsumerDeletedIsSetUpAgain(t *testing.T) {
	e := newEnv(t)
	w := e.start(nil)
	first := e.publishLine(withField(t, readExample(t, "credential.truststore.set"), "id", "before-delete"))
	e.awaitResults(1, 15*time.Second)
	eventually(t, 5*time.Second, "the first command acknowledged", func() bool { return e.pending() == 0 })
	if err := e.js.DeleteConsumer(context.Background(), worker.DefaultCommandStream, worker.ProjectConsumer(worker.DefaultConsumer, first.Project)); err != nil {
		t.Fatal(err)
	}
	cmd := e.publishLine(readExample(t, "credential.truststore.set"))
	if r := e.awaitResults(1, 15*time.Second)[cmd.ID]; r.Status != messages.StatusSucceeded {
		t.Errorf("result %s", r.raw)
	}
	if err := w.Ready(); err != nil {
		t.Errorf("not ready after the consumer came back: %v", err)
	}
}

// TestInvalidCopyWaitsForTheRunningID: an invalid copy of an id that is still running
// waits for it, then is rejected as id_reused under a record of its own, instead of
// claiming the id with its rejection.
func TestInvalidCopyWaitsForTheRunningID(t *testing.T) {
	e := newEnv(t)
	slow := make(chan struct{}, 1)
	e.mu.Lock()
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case slow <- struct{}{}:
			time.Sleep(time.Second)
		default:
		}
		return false
	}
	e.mu.Unlock()
	e.start(nil)
	valid := readExample(t, "credential.truststore.set")
	cmd := e.publishLine(valid)
	<-slow
	inbox := messages.ReplyInbox("MyProject") + nuid.Next()
	replies, _ := e.nc.SubscribeSync(inbox)
	e.publish("MyProject", cmd.Type, "", withField(t, withField(t, valid, "replyTo", inbox), "extra", true))
	reply, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeResult(t, reply); r.Status != messages.StatusRejected || r.Error == nil || r.Error.Code != messages.CodeIDReused {
		t.Errorf("the invalid copy got %s, want id_reused", reply.Data)
	}
	statuses := map[messages.Status]int{}
	for range 2 { // both under the id: the command's success, the copy's rejection
		select {
		case msg := <-e.results:
			r := decodeResult(t, msg)
			statuses[r.Status]++
			if r.Status == messages.StatusSucceeded && r.Attempts != 1 {
				t.Errorf("the running command's result %s", msg.Data)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("results: %v so far", statuses)
		}
	}
	if statuses[messages.StatusSucceeded] != 1 || statuses[messages.StatusRejected] != 1 {
		t.Errorf("results %v, want one success and one rejection", statuses)
	}
	if n := len(e.streamMsgs("APIOPS_DEAD")); n != 1 {
		t.Errorf("%d dead letters, want the rejection's", n)
	}
}
