package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

const planMarker = "plan-secret-marker"

// planFile is the plan's truststore, which opens with planMarker, as the worker checks.
var planFile = keystorestest.Base64(keystorestest.Spec{Password: planMarker, TrustStore: true})

// rotationPlan is a 5-step rotation of MyProject's truststore to name, with an undo
// step that gives partner-a its old truststore back.
func rotationPlan(id, name string) []byte {
	file := planFile
	plan := map[string]any{
		"id": id, "correlationId": "plan-test",
		"steps": []any{
			map[string]any{"type": "keystore.create", "params": map[string]any{"name": name, "keyStoreEnvironmentList": []any{
				map[string]any{"environmentName": "production", "file": file, "password": planMarker, "keyStoreType": "PKCS12"}}}},
			map[string]any{"type": "credential.truststore.set", "params": map[string]any{"username": "partner-a", "keystoreName": name}},
			map[string]any{"type": "credential.truststore.set", "params": map[string]any{"username": "partner-b", "keystoreName": name}},
			map[string]any{"type": "proxy.mtls.update", "params": map[string]any{"apiProxyName": "PaymentsAPI", "trustStoreId": name}},
			map[string]any{"type": "keystore.delete", "params": map[string]any{"keystoreName": "legacy-2019"}},
		},
		"onFailure": []any{
			map[string]any{"type": "credential.truststore.set", "params": map[string]any{"username": "partner-a", "keystoreName": "trust-2025"}},
		},
	}
	data, _ := json.Marshal(plan)
	return data
}

func (e *env) publishPlan(id string, body []byte) {
	e.t.Helper()
	e.publish("MyProject", messages.PlanType, messages.MsgID("MyProject", id), body)
}

// stepPaths are the paths of APIOps's requests, in order.
func (e *env) stepPaths() []string {
	var paths []string
	for _, r := range e.sim.Requests() {
		paths = append(paths, r.Method+" "+r.Path)
	}
	return paths
}

// TestPlanRunsItsSteps: a 5-step plan makes 5 requests in order, 5 step results and
// one plan result that holds them; no secret is in any result or log line.
func TestPlanRunsItsSteps(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	e.publishPlan("rot-1", rotationPlan("rot-1", "plan-2027"))
	got := e.awaitResults(6, 30*time.Second)
	plan := got["rot-1"]
	if plan == nil || plan.Type != "plan" || plan.Status != messages.StatusSucceeded || len(plan.Steps) != 5 || plan.FailedStep != nil || len(plan.OnFailure) != 0 {
		t.Fatalf("plan result %s", plan.raw)
	}
	for i := range 5 {
		id := fmt.Sprintf("rot-1:step-%d", i+1)
		if r := got[id]; r == nil || r.Status != messages.StatusSucceeded || plan.Steps[i].ID != id || plan.Steps[i].Status != messages.StatusSucceeded {
			t.Errorf("step %d: result %v, in the plan %+v", i+1, r, plan.Steps[i])
		}
	}
	paths := e.stepPaths()
	want := []string{"POST", "PUT", "PUT", "PATCH", "DELETE"}
	if len(paths) != 5 {
		t.Fatalf("APIOps saw %v", paths)
	}
	for i, p := range paths {
		if !strings.HasPrefix(p, want[i]+" ") {
			t.Errorf("request %d is %s, want %s", i+1, p, want[i])
		}
	}
	if strings.Contains(e.logs.String(), planMarker) {
		t.Error("a log line holds the keystore password")
	}
	for _, m := range e.streamMsgs("APIOPS_RESULTS") {
		if strings.Contains(string(m.Data()), planMarker) {
			t.Errorf("a result holds the keystore password: %s", m.Data())
		}
	}
	eventually(t, 10*time.Second, "the plan acknowledged", func() bool { return e.pending() == 0 })
}

// TestPlanStopsAtAFailedStep: step 3 fails, steps 4 and 5 are skipped, the undo runs,
// and the plan and the step get dead letters without secrets.
func TestPlanStopsAtAFailedStep(t *testing.T) {
	e := newEnv(t)
	e.failFor("/credentials/partner-b/", http.StatusConflict)
	e.start(nil)
	e.publishPlan("rot-2", rotationPlan("rot-2", "plan-2028"))
	got := e.awaitResults(5, 30*time.Second) // steps 1-3, the undo, the plan
	plan := got["rot-2"]
	if plan == nil || plan.Status != messages.StatusFailed || plan.FailedStep == nil || *plan.FailedStep != 2 ||
		plan.Error == nil || plan.Error.Code != messages.CodeStepFailed || plan.Error.Field != "steps[2]" {
		t.Fatalf("plan result %s", plan.raw)
	}
	for i, want := range []messages.Status{"succeeded", "succeeded", "failed", "skipped", "skipped"} {
		if plan.Steps[i].Status != want {
			t.Errorf("step %d is %s, want %s", i+1, plan.Steps[i].Status, want)
		}
	}
	if len(plan.OnFailure) != 1 || plan.OnFailure[0].Status != messages.StatusSucceeded || got["rot-2:undo-1"] == nil {
		t.Errorf("the undo: %+v", plan.OnFailure)
	}
	for _, p := range e.stepPaths() {
		if strings.Contains(p, "PaymentsAPI") || strings.Contains(p, "legacy-2019") {
			t.Errorf("a skipped step reached APIOps: %s", p)
		}
	}
	if cred, _ := e.sim.Credential("MyProject", "partner-a"); cred.Truststore != "trust-2025" {
		t.Errorf("the undo did not give partner-a its truststore back: %+v", cred)
	}
	dead := e.deadLetters()
	subjects := map[string]string{}
	for _, m := range dead {
		subjects[m.Subject()] = m.Headers().Get(messages.HeaderFailedStep)
		if strings.Contains(string(m.Data()), planMarker) {
			t.Errorf("a dead letter holds the keystore password: %s", m.Data())
		}
	}
	if subjects["apiops.dlq.MyProject.plan"] != "2" || len(dead) != 2 {
		t.Errorf("dead letters %v, want the plan's (failed step 2) and step 3's", subjects)
	}
}

// TestPlanWithAnInvalidStepIsRejected: nothing of it runs.
func TestPlanWithAnInvalidStepIsRejected(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	var plan map[string]any
	_ = json.Unmarshal(rotationPlan("rot-3", "plan-2029"), &plan)
	delete(plan["steps"].([]any)[3].(map[string]any)["params"].(map[string]any), "apiProxyName")
	body, _ := json.Marshal(plan)
	e.publishPlan("rot-3", body)
	r := e.awaitResults(1, 30*time.Second)["rot-3"]
	if r == nil || r.Status != messages.StatusRejected || r.Error.Field != "steps[3].params.apiProxyName" {
		t.Fatalf("result %s", r.raw)
	}
	if n := e.apiopsRequests(); n != 0 {
		t.Errorf("%d APIOps requests", n)
	}
}

// TestPlanKeepsStreamOrder: commands for partner-b published before and after a plan
// that changes partner-b run before and after it.
func TestPlanKeepsStreamOrder(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	e.publishLine([]byte(`{"id":"before","type":"credential.truststore.set","project":"MyProject","params":{"username":"partner-b","keystoreName":"trust-2025"}}`))
	e.publishPlan("rot-4", rotationPlan("rot-4", "plan-2030"))
	e.publishLine([]byte(`{"id":"after","type":"credential.truststore.set","project":"MyProject","params":{"username":"partner-b","keystoreName":"trust-2026"}}`))
	e.awaitResults(8, 30*time.Second)
	var partnerB []string
	for _, r := range e.sim.Requests() {
		if strings.Contains(r.Path, "/partner-b/") {
			partnerB = append(partnerB, r.Path)
		}
	}
	want := []string{"trust-2025", "plan-2030", "trust-2026"}
	if len(partnerB) != 3 {
		t.Fatalf("partner-b's requests: %v", partnerB)
	}
	for i := range want {
		if !strings.Contains(partnerB[i], want[i]) {
			t.Errorf("partner-b's requests in this order: %v, want %v", partnerB, want)
		}
	}
}

// TestPlanResumesAfterSIGKILL: the worker is killed while step 3's request is in
// flight; the restarted worker runs steps 3 to 5, never steps 1 and 2 again, and the
// plan ends with one result.
func TestPlanResumesAfterSIGKILL(t *testing.T) {
	t.Parallel() // waits for a lease to lapse: CPU is idle meanwhile
	if testing.Short() {
		t.Skip("builds and runs the worker binary")
	}
	bin := buildWorker(t)
	e := newEnv(t)
	inStep3 := make(chan struct{})
	release := make(chan struct{})
	e.mu.Lock()
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/partner-b/") {
			select {
			case inStep3 <- struct{}{}:
				<-release // held until the worker is dead
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			default:
			}
		}
		return false
	}
	e.mu.Unlock()
	defer close(release)
	first, _ := e.startProcess(bin, []string{"APIOPS_TOKEN=sim-token"})
	e.publishPlan("rot-5", rotationPlan("rot-5", "plan-2031"))
	select {
	case <-inStep3:
	case <-time.After(30 * time.Second):
		t.Fatal("step 3 never started")
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	_, logs := e.startProcess(bin, []string{"APIOPS_TOKEN=sim-token"})
	var plan *result
	for plan == nil {
		select {
		case msg := <-e.results:
			if r := decodeResult(t, msg); r.ID == "rot-5" {
				plan = r
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("no plan result after the restart; logs:\n%s", logs.String())
		}
	}
	if plan.Status != messages.StatusSucceeded || len(plan.Steps) != 5 {
		t.Fatalf("plan result %s", plan.raw)
	}
	calls := map[string]int{}
	for _, r := range e.sim.Requests() {
		calls[r.Method+" "+r.Path]++
	}
	for path, n := range calls {
		if n > 1 && !strings.Contains(path, "/partner-b/") {
			t.Errorf("%s was called %d times: a finished step ran again", path, n)
		}
	}
	eventually(t, 10*time.Second, "the plan acknowledged", func() bool { return e.pending() == 0 })
}

// TestPlanSurvivesLeaderChanges: on a 3-node cluster, step 3 runs for twice the ack
// wait and the leaders of the command stream, the consumer and the idempotency bucket
// step down meanwhile; the plan goes on, and every step reaches APIOps once.
func TestPlanSurvivesLeaderChanges(t *testing.T) {
	t.Parallel() // waits on leases and NATS: CPU is idle meanwhile
	cluster := natstest.StartCluster(t, 3, nil)
	nc, err := nats.Connect(cluster.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cluster.WaitForJetStream(nc)
	e := newEnv(t) // for the simulator and the logs; its own server stays unused
	e.cfg.Replicas = 3
	inStep3, release := make(chan struct{}), make(chan struct{})
	e.mu.Lock()
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/partner-b/") {
			close(inStep3)
			<-release
		}
		return false
	}
	e.mu.Unlock()
	client, _ := apiops.New(e.apiURL, apiops.StaticToken("sim-token"))
	w, err := worker.New(nc, client, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(ctx) }()
	defer func() { cancel(); <-stopped }()
	eventually(t, 30*time.Second, "the worker active", func() bool { return w.Ready() == nil && w.Active() })
	plans, _ := nc.SubscribeSync("apiops.result.MyProject.plan")
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(context.Background(), "apiops.cmd.MyProject.plan", rotationPlan("rot-6", "plan-2032")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inStep3:
	case <-time.After(30 * time.Second):
		t.Fatal("step 3 never started")
	}
	// The step outlasts the ack wait twice: the plan is kept alive meanwhile.
	time.Sleep(2 * e.cfg.AckWait)
	for _, subject := range []string{"$JS.API.STREAM.LEADER.STEPDOWN.APIOPS_COMMANDS",
		"$JS.API.CONSUMER.LEADER.STEPDOWN.APIOPS_COMMANDS.apiops-worker", "$JS.API.STREAM.LEADER.STEPDOWN.KV_APIOPS_IDEMPOTENCY"} {
		if _, err := nc.Request(subject, nil, 10*time.Second); err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
	}
	close(release)
	msg, err := plans.NextMsg(60 * time.Second)
	if err != nil {
		t.Fatalf("no plan result: %v\n%s", err, e.logs.String())
	}
	if r := decodeResult(t, msg); r.Status != messages.StatusSucceeded || len(r.Steps) != 5 {
		t.Fatalf("plan result %s", r.raw)
	}
	calls := map[string]int{}
	for _, r := range e.sim.Requests() {
		calls[r.Method+" "+r.Path]++
	}
	if len(calls) != 5 {
		t.Errorf("APIOps saw %v", calls)
	}
	for path, n := range calls {
		if n != 1 {
			t.Errorf("%s was called %d times", path, n)
		}
	}
}
