package messages_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
)

func readPlan(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile("../testdata/plans/rotation.json")
	if err != nil {
		t.Fatal(err)
	}
	var plan map[string]any
	if err := json.Unmarshal(data, &plan); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestPlanDecodes: a plan's steps become commands of its project with ids derived
// from its own, and it survives Encode.
func TestPlanDecodes(t *testing.T) {
	data, _ := json.Marshal(readPlan(t))
	cmd, err := messages.Decode("MyProject", messages.PlanType, data)
	if err != nil {
		t.Fatal(err)
	}
	plan, ok := cmd.Plan()
	if !ok || len(plan.Steps) != 10 || len(plan.OnFailure) != 1 || plan.PartialSucceeds {
		t.Fatalf("plan %+v", plan)
	}
	if s := plan.Steps[2]; s.ID != "rot-2026-11-22:step-3" || s.Type != "credential.truststore.set" || s.Project != "MyProject" || s.CorrelationID != "rotation-2026-11-22" {
		t.Errorf("step 3 is %+v", s)
	}
	if id := plan.OnFailure[0].ID; id != "rot-2026-11-22:undo-1" {
		t.Errorf("undo step id %q", id)
	}
	keys := cmd.ResourceKeys()
	if len(keys) != 8 || keys[0] != "MyProject/apiProxy/MyAPI" {
		t.Errorf("resource keys %v", keys)
	}
	wire, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := messages.Decode("MyProject", messages.PlanType, wire)
	if err != nil {
		t.Fatalf("%v\n%s", err, wire)
	}
	p2, _ := again.Plan()
	for i := range plan.Steps {
		a, b := plan.Steps[i].APIRequest(), p2.Steps[i].APIRequest()
		if a.String() != b.String() || string(a.Body) != string(b.Body) || !reflect.DeepEqual(a.Query, b.Query) {
			t.Errorf("step %d changed in the round trip", i+1)
		}
	}
	if err := cmd.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestPlanErrorsNameTheirPath: anything wrong in a step rejects the whole plan, naming
// the path into it.
func TestPlanErrorsNameTheirPath(t *testing.T) {
	steps := func(p map[string]any) []any { return p["steps"].([]any) }
	stepParams := func(p map[string]any, i int) map[string]any {
		return steps(p)[i].(map[string]any)["params"].(map[string]any)
	}
	for _, tc := range []struct {
		name   string
		change func(p map[string]any)
		code   string
		field  string
	}{
		{"a required field missing", func(p map[string]any) { delete(stepParams(p, 3), "username") }, messages.CodeInvalidCommand, "steps[3].params.username"},
		{"an unknown step type", func(p map[string]any) { steps(p)[1].(map[string]any)["type"] = "keystore.burn" }, messages.CodeUnknownType, "steps[1].type"},
		{"a plan inside a plan", func(p map[string]any) { steps(p)[1].(map[string]any)["type"] = "plan" }, messages.CodeUnknownType, "steps[1].type"},
		{"a cross-field rule", func(p map[string]any) { stepParams(p, 4)["jwkUpdateAction"] = "NULLIFY" }, messages.CodeInvalidCommand, "steps[4].params.updateScope"},
		{"a step with a project", func(p map[string]any) { steps(p)[0].(map[string]any)["project"] = "TeamA" }, messages.CodeInvalidCommand, "steps[0].project"},
		{"an undo step", func(p map[string]any) {
			delete(p["onFailure"].([]any)[0].(map[string]any)["params"].(map[string]any), "keystoreName")
		}, messages.CodeInvalidCommand, "onFailure[0].params.keystoreName"},
		{"no steps", func(p map[string]any) { p["steps"] = []any{} }, messages.CodeInvalidCommand, "steps"},
		{"too many steps", func(p map[string]any) {
			var many []any
			for range messages.MaxPlanSteps + 1 {
				many = append(many, steps(p)[1])
			}
			p["steps"] = many
		}, messages.CodeInvalidCommand, "steps"},
		{"params instead of steps", func(p map[string]any) { p["params"] = map[string]any{} }, messages.CodeInvalidCommand, "params"},
		{"an id too long for its steps", func(p map[string]any) { p["id"] = strings.Repeat("x", 120) }, messages.CodeInvalidCommand, "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := readPlan(t)
			tc.change(p)
			data, _ := json.Marshal(p)
			_, err := messages.Decode("MyProject", messages.PlanType, data)
			var e *messages.Error
			if !errors.As(err, &e) || e.Code != tc.code || e.Field != tc.field {
				t.Fatalf("error %v, want %s at %s", err, tc.code, tc.field)
			}
		})
	}
}

// TestPlanSealsItsSteps: sealing a plan seals every step's secrets, bound to the
// plan's project.
func TestPlanSealsItsSteps(t *testing.T) {
	data, _ := json.Marshal(readPlan(t))
	cmd, err := messages.Decode("MyProject", messages.PlanType, data)
	if err != nil {
		t.Fatal(err)
	}
	var sealed []messages.SealedContent
	err = cmd.SealSecrets(func(c messages.SealedContent) (messages.Sealed, error) {
		sealed = append(sealed, c)
		return messages.Sealed{Box: "eGt2MQ", For: "X", From: "X"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) == 0 {
		t.Fatal("no secret of the plan's steps was sealed")
	}
	for _, c := range sealed {
		if c.Project != "MyProject" || (c.Field != "password" && c.Field != "file") {
			t.Errorf("sealed %s of project %q", c.Field, c.Project)
		}
	}
	plan, _ := cmd.Plan()
	if _, ok := plan.Steps[0].Params.(*messages.KeystoreCreate).KeyStoreEnvironmentList[0].Password.Sealed(); !ok {
		t.Error("the first step's password is still plaintext")
	}
}

// TestParseStepID: StepID's inverse, and nothing else.
func TestParseStepID(t *testing.T) {
	for _, undo := range []bool{false, true} {
		for _, n := range []int{1, 100} {
			gotUndo, gotN, ok := messages.ParseStepID("rot:a", messages.StepID("rot:a", undo, n))
			if !ok || gotUndo != undo || gotN != n {
				t.Errorf("StepID(%v, %d) parses as %v %d %v", undo, n, gotUndo, gotN, ok)
			}
		}
	}
	for _, id := range []string{"rot:a", "rot:a:1", "rot:a:step-0", "rot:a:step-01", "rot:a:undo-x", "other:step-1", "rot:a:step-1x"} {
		if _, _, ok := messages.ParseStepID("rot:a", id); ok {
			t.Errorf("%q parses as a step of rot:a", id)
		}
	}
}
