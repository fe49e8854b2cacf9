package ctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/internal/testkit/workertest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// newWorkerEnv is NATS, the APIOps simulator and a real worker between them, and the
// environment that points apiopsctl at that NATS.
func newWorkerEnv(t *testing.T) (*testEnv, *simulator.Server) {
	t.Helper()
	e := workertest.Start(t, "../../../testdata/apiops-seed.json", worker.Config{})
	url := e.NATS.ClientURL()
	return &testEnv{url: url, nc: e.NATS.Connect(t), vars: map[string]string{"NATS_URL": url}}, e.Sim
}

// planLines are 5 steps of MyProject; the second sets the truststore of user.
func planLines(user string) string {
	return strings.Join([]string{
		`{"id":"a","type":"keystore.create","project":"MyProject","params":{"name":"trust-x","keyStoreEnvironmentList":[{"environmentName":"production","file":"` + keystoreFile + `","password":"` + password + `","keyStoreType":"PKCS12"}]}}`,
		`{"id":"b","type":"credential.truststore.set","project":"MyProject","params":{"username":"` + user + `","keystoreName":"trust-x"}}`,
		``,
		`{"id":"c","type":"credential.truststore.set","project":"MyProject","params":{"username":"partner-b","keystoreName":"trust-x"}}`,
		`{"id":"d","type":"proxy.mtls.update","project":"MyProject","params":{"apiProxyName":"PaymentsAPI","trustStoreId":"trust-x"}}`,
		`{"id":"e","type":"keystore.delete","project":"MyProject","params":{"keystoreName":"legacy-2019"}}`,
	}, "\n")
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func onePlanResult(t *testing.T, out *output) messages.Result {
	t.Helper()
	ls := lines(out.stdout.String())
	if len(ls) != 1 {
		t.Fatalf("want one JSON line, got %d:\n%s\nstderr:\n%s", len(ls), out.stdout.String(), out.stderr.String())
	}
	var r messages.Result
	if err := json.Unmarshal([]byte(ls[0]), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPlanSucceeds(t *testing.T) {
	e, sim := newWorkerEnv(t)
	var out output
	code := Plan(testContext(t), []string{"--id", "rot-ctl-1", "--output", "json", "-"}, e.io(planLines("partner-a"), &out))
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	r := onePlanResult(t, &out)
	if r.ID != "rot-ctl-1" || r.Type != messages.PlanType || r.Status != messages.StatusSucceeded || len(r.Steps) != 5 || r.FailedStep != nil || r.CorrelationID != "rot-ctl-1" {
		t.Errorf("result %+v", r)
	}
	if r.Steps[1].ID != "rot-ctl-1:step-2" || r.Steps[1].Type != "credential.truststore.set" {
		t.Errorf("step 2: %+v", r.Steps[1])
	}
	if cred, _ := sim.Credential("MyProject", "partner-a"); cred.Truststore != "trust-x" {
		t.Errorf("partner-a's truststore %q", cred.Truststore)
	}
	if strings.Contains(out.stdout.String()+out.stderr.String(), password) {
		t.Error("the output shows a password")
	}
}

func TestPlanFailsAndUndoes(t *testing.T) {
	e, sim := newWorkerEnv(t)
	undo := writeFile(t, "undo.jsonl", `{"id":"u","type":"credential.truststore.set","project":"MyProject","params":{"username":"partner-a","keystoreName":"trust-2026"}}`)
	var out output
	code := Plan(testContext(t), []string{"--id", "rot-ctl-2", "--on-failure", undo, "-"}, e.io(planLines("nobody"), &out))
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, out.stderr.String())
	}
	table := out.stdout.String()
	for _, want := range []string{"rot-ctl-2:step-2", "failed", "skipped", "undo 1", "rot-ctl-2:undo-1",
		"plan rot-ctl-2 failed: step 2 of 5 (credential.truststore.set) did not succeed; 3 skipped; onFailure: 1 succeeded"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
	if cred, _ := sim.Credential("MyProject", "partner-a"); cred.Truststore != "trust-2026" {
		t.Errorf("the undo step did not run: partner-a's truststore %q", cred.Truststore)
	}

	// --output json: one line with failedStep.
	out = output{}
	code = Plan(testContext(t), []string{"--id", "rot-ctl-3", "--output", "json", "-"}, e.io(strings.ReplaceAll(planLines("nobody"), "trust-x", "trust-y"), &out))
	r := onePlanResult(t, &out)
	if code != 2 || r.Status != messages.StatusFailed || r.FailedStep == nil || *r.FailedStep != 1 || r.Steps[4].Status != messages.StatusSkipped {
		t.Errorf("exit %d, result %+v", code, r)
	}
}

func TestPlanJSONFile(t *testing.T) {
	e, _ := newWorkerEnv(t)
	var out output
	code := Plan(testContext(t), []string{"--json", "--project", "MyProject", "--output", "json", "../../../testdata/plans/rotation.json"}, e.io("", &out))
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	if r := onePlanResult(t, &out); r.ID != "rot-2026-11-22" || len(r.Steps) != 10 || r.Status != messages.StatusSucceeded {
		t.Errorf("result %+v", r)
	}
	out = output{}
	if code := Plan(testContext(t), []string{"--json", "--project", "TeamA", "../../../testdata/plans/rotation.json"}, e.io("", &out)); code != 1 || !strings.Contains(out.stderr.String(), `is a plan of project "MyProject", not --project "TeamA"`) {
		t.Errorf("another project: exit %d, %s", code, out.stderr.String())
	}
	out = output{}
	if code := Plan(testContext(t), []string{"--json", "-"}, e.io(`{"id":"p","steps":[{"type":"keystore.delete","params":{"keystoreName":"k"}}]}`, &out)); code != 1 || !strings.Contains(out.stderr.String(), "names no project: give --project") {
		t.Errorf("without a project: exit %d, %s", code, out.stderr.String())
	}
}

func TestPlanUsageErrors(t *testing.T) {
	e := newTestEnv(t)
	mixed := planLines("partner-a") + "\n" + `{"id":"f","type":"keystore.delete","project":"TeamA","params":{"keystoreName":"old"}}`
	for _, c := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"mixed projects", mixed, []string{"-"}, `stdin line 7: project "TeamA" is not the plan's project "MyProject" (from line 1)`},
		{"invalid line", `{"id":"a","type":"keystore.delete","project":"P","params":{"keystoreName":".."}}`, []string{"-"}, "stdin line 1: invalid_command: params.keystoreName"},
		{"empty", "\n", []string{"-"}, "no commands"},
		{"no file", "", nil, "want one FILE"},
		{"bad output", "", []string{"--output", "yaml", "-"}, `--output "yaml"`},
		{"long id", planLines("u"), []string{"--id", strings.Repeat("x", 125), "-"}, "id must be at most"},
	} {
		var out output
		code := Plan(testContext(t), c.args, e.io(c.stdin, &out))
		if code != 1 || !strings.Contains(out.stderr.String(), c.want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", c.name, code, out.stderr.String(), c.want)
		}
	}
	var out output
	e.vars["NATS_URL"] = "nats://127.0.0.1:1"
	if code := Plan(testContext(t), []string{"-"}, e.io(planLines("u"), &out)); code != 1 || !strings.Contains(out.stderr.String(), "connect to") {
		t.Errorf("no NATS: exit %d, %s", code, out.stderr.String())
	}
}

func TestDefaultPlanID(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 15, 0, 0, time.UTC)
	for in, want := range map[string]string{"plans/rotation.jsonl": "rotation-20261122T101500Z", "-": "plan-20261122T101500Z", "a b+c.jsonl": "a-b-c-20261122T101500Z"} {
		if got := defaultPlanID(in, at); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestLiveStepsShowWholeStepIDs: on a terminal, each step's row shows its whole id: the
// STEP column fits the plan's longest step id (up to maxStepWidth; beyond, it wraps).
func TestLiveStepsShowWholeStepIDs(t *testing.T) {
	for _, planID := range []string{"rotation-20261122T101500Z", strings.Repeat("p", 90)} {
		p := &messages.Plan{Steps: make([]*messages.Command, 12), OnFailure: make([]*messages.Command, 1)}
		var out output
		l := newLiveSteps(&out.stderr, planID, p)
		l.on = true // as on a terminal
		l.start()
		for _, id := range []string{messages.StepID(planID, false, 2), messages.StepID(planID, false, 12), messages.StepID(planID, true, 1)} {
			l.step(&messages.Result{ID: id, Type: "credential.truststore.set", Status: messages.StatusSucceeded, Attempts: 1})
		}
		text := strings.ReplaceAll(out.stderr.String(), "\r\x1b[K", "")
		want := []string{planID + ":step-2", planID + ":step-12", planID + ":undo-1"}
		if got := columnCells(lines(text), "STEP", "TYPE"); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("step ids %q, want %q:\n%s", got, want, text)
		}
		if strings.Contains(text, "…") {
			t.Errorf("an id is cut:\n%s", text)
		}
		if planID == "rotation-20261122T101500Z" && !strings.Contains(text, "rotation-20261122T101500Z:step-12  credential.truststore.set") {
			t.Errorf("the STEP column does not fit the longest step id:\n%s", text)
		}
	}
}

// TestPlanMarksStoredResult: the same plan again (its id finished) is answered from the
// worker's record, replayed, and runs nothing: the summary says it is a stored result.
func TestPlanMarksStoredResult(t *testing.T) {
	e, sim := newWorkerEnv(t)
	var out output
	if code := Plan(testContext(t), []string{"--id", "rot-again-1", "-"}, e.io(planLines("partner-a"), &out)); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	if first := out.stdout.String(); !strings.Contains(first, "plan rot-again-1 succeeded\n") || strings.Contains(first, "stored") {
		t.Errorf("first run:\n%s", first)
	}
	requests := len(sim.Requests())
	out = output{}
	if code := Plan(testContext(t), []string{"--id", "rot-again-1", "-"}, e.io(planLines("partner-a"), &out)); code != 0 {
		t.Fatalf("again: exit %d; stderr:\n%s", code, out.stderr.String())
	}
	if again := out.stdout.String(); !strings.Contains(again, "plan rot-again-1 succeeded (stored result: not run again)\n") {
		t.Errorf("again: the summary does not say it is a stored result:\n%s", again)
	}
	if n := len(sim.Requests()); n != requests {
		t.Errorf("again: %d requests reached APIOps", n-requests)
	}
}
