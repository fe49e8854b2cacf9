package client_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/internal/testkit/workertest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// realWorker starts NATS, the APIOps simulator and a real worker between them, and
// returns a connection to that NATS and the simulator.
func realWorker(t *testing.T, opener messages.Opener) (*nats.Conn, *simulator.Server) {
	t.Helper()
	e := workertest.Start(t, "../testdata/apiops-seed.json", worker.Config{Opener: opener, RequireSealed: opener != nil})
	return e.NATS.Connect(t), e.Sim
}

// rotation is a 5-step plan: a truststore created and given to two credentials and a
// proxy, an old keystore deleted; its undo gives partner-a trust-2025 back. The
// second step sets the truststore of credential secondUser.
func rotationPlan(id, secondUser string) *messages.Command {
	return &messages.Command{ID: id, Project: "MyProject", CorrelationID: "plan-test", Params: &messages.Plan{
		Steps: []*messages.Command{
			{Params: &messages.KeystoreCreate{Name: "trust-" + id, KeyStoreEnvironmentList: []messages.KeyStoreEnvironment{{
				EnvironmentName: "production", File: messages.NewSecret(file), Password: messages.NewSecret(password), KeyStoreType: "PKCS12"}}}},
			{Params: &messages.CredentialTruststoreSet{Username: secondUser, KeystoreName: "trust-" + id}},
			{Params: &messages.CredentialTruststoreSet{Username: "partner-b", KeystoreName: "trust-" + id}},
			{Params: &messages.ProxyMTLSUpdate{APIProxyName: "PaymentsAPI", TrustStoreID: ptr("trust-" + id)}},
			{Params: &messages.KeystoreDelete{KeystoreName: "legacy-2019"}},
		},
		OnFailure: []*messages.Command{
			{Params: &messages.CredentialTruststoreSet{Username: "partner-a", KeystoreName: "trust-2025"}},
		},
	}}
}

func ptr[T any](v T) *T { return &v }

// collect is an onStep that records the ids, and that it was called on one goroutine
// at a time.
type collect struct {
	mu  sync.Mutex
	ids []string
	res []*messages.Result
}

func (c *collect) onStep(r *messages.Result) {
	if !c.mu.TryLock() {
		panic("onStep called concurrently")
	}
	defer c.mu.Unlock()
	c.ids = append(c.ids, r.ID)
	c.res = append(c.res, r)
}

func TestSubmitPlanSucceeds(t *testing.T) {
	nc, sim := realWorker(t, nil)
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var steps collect
	plan := rotationPlan("rot-ok", "partner-a")
	res, err := c.SubmitPlan(ctx, plan, steps.onStep)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "rot-ok" || res.Type != messages.PlanType || res.Status != messages.StatusSucceeded || res.FailedStep != nil || len(res.Steps) != 5 {
		t.Fatalf("plan result %+v", res)
	}
	if got := strings.Join(steps.ids, " "); got != "rot-ok:step-1 rot-ok:step-2 rot-ok:step-3 rot-ok:step-4 rot-ok:step-5" {
		t.Errorf("onStep saw %s", got)
	}
	for _, r := range steps.res {
		if r.Status != messages.StatusSucceeded {
			t.Errorf("step %s: %s", r.ID, r.Status)
		}
	}
	if cred, _ := sim.Credential("MyProject", "partner-a"); cred.Truststore != "trust-rot-ok" {
		t.Errorf("partner-a's truststore is %q", cred.Truststore)
	}
	if plan.ReplyTo != "" {
		t.Error("SubmitPlan changed the caller's plan")
	}

	// Again: JetStream drops the duplicate, the client publishes it once more, and the
	// worker answers from the stored result; onStep still sees every step, once.
	var again collect
	res2, err := c.SubmitPlan(ctx, rotationPlan("rot-ok", "partner-a"), again.onStep)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Status != messages.StatusSucceeded || len(again.ids) != 5 || !res2.ReceivedAt.Equal(res.ReceivedAt) {
		t.Errorf("again: %+v, onStep %v", res2, again.ids)
	}
}

func TestSubmitPlanStopsAtAFailedStep(t *testing.T) {
	nc, sim := realWorker(t, nil)
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var steps collect
	res, err := c.SubmitPlan(ctx, rotationPlan("rot-bad", "nobody"), steps.onStep)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != messages.StatusFailed || res.FailedStep == nil || *res.FailedStep != 1 || res.Error == nil || res.Error.Code != messages.CodeStepFailed {
		t.Fatalf("plan result %+v", res)
	}
	want := []messages.Status{messages.StatusSucceeded, messages.StatusFailed, messages.StatusSkipped, messages.StatusSkipped, messages.StatusSkipped}
	for i, s := range want {
		if res.Steps[i].Status != s {
			t.Errorf("step %d: %s, want %s", i, res.Steps[i].Status, s)
		}
	}
	if len(res.OnFailure) != 1 || res.OnFailure[0].Status != messages.StatusSucceeded || res.OnFailure[0].ID != "rot-bad:undo-1" {
		t.Errorf("onFailure %+v", res.OnFailure)
	}
	if got := strings.Join(steps.ids, " "); got != "rot-bad:step-1 rot-bad:step-2 rot-bad:undo-1" {
		t.Errorf("onStep saw %s", got)
	}
	if _, ok := sim.Keystore("MyProject", "legacy-2019"); !ok {
		t.Error("a skipped step ran: legacy-2019 is gone")
	}
}

func TestSubmitPlanSealsItsSteps(t *testing.T) {
	ring, pub := workerKeys(t)
	nc, _ := realWorker(t, ring)
	c, err := client.New(nc, client.WithSealKey(pub))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	published, err := nc.SubscribeSync("apiops.cmd.MyProject.plan")
	if err != nil {
		t.Fatal(err)
	}
	plan := rotationPlan("rot-sealed", "partner-a")
	res, err := c.SubmitPlan(ctx, plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The worker requires sealed secrets: the plan ran, so its step was sealed.
	if res.Status != messages.StatusSucceeded {
		t.Fatalf("plan result %+v", res)
	}
	m, err := published.NextMsg(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "the published plan", string(m.Data))
	if mine := plan.Params.(*messages.Plan).Steps[0].Params.(*messages.KeystoreCreate).KeyStoreEnvironmentList[0]; mine.Password.Reveal() != password {
		t.Error("SubmitPlan sealed the caller's plan")
	}
}

func TestSubmitPlanRefuses(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	if _, err := e.client.SubmitPlan(ctx, truststoreSet("not-a-plan", "u"), nil); err == nil || !strings.Contains(err.Error(), "not a *messages.Plan") {
		t.Errorf("a command that is not a plan: %v", err)
	}
	bad := rotationPlan("rot-invalid", "partner-a")
	bad.Params.(*messages.Plan).Steps[2].Params = &messages.KeystoreDelete{KeystoreName: ".."}
	_, err := e.client.SubmitPlan(ctx, bad, nil)
	if err == nil || !strings.Contains(err.Error(), "steps[2].params.keystoreName") {
		t.Errorf("an invalid step: %v", err)
	}
	if n := msgCount(t, e.commands); n != 0 {
		t.Errorf("%d messages published", n)
	}
}
