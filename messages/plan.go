package messages

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PlanType is the subject's <type> of a plan: <prefix>.cmd.<project>.plan.
const PlanType = "plan"

// MaxPlanSteps bounds a plan's steps, and its onFailure steps.
const MaxPlanSteps = 100

// maxPlanID leaves room in a step's id (at most MaxIDLength) for its suffix.
const maxPlanID = MaxIDLength - len(":undo-100")

// Plan is the params of a plan: commands of the plan's project that run in order, each
// only after the one before succeeded. The first that does not succeed stops the
// plan: the later ones are skipped and OnFailure runs, in order, whatever each of its
// steps comes to.
type Plan struct {
	Steps     []*Command
	OnFailure []*Command
	// OnFailureFrom is the first step whose failure runs OnFailure (0, the default: any
	// step's). A plan whose first step creates what OnFailure deletes sets 1, so that
	// a create that failed (the name was taken) never deletes what was there before.
	OnFailureFrom int
	// PartialSucceeds lets a step whose status is partial (some environment did not
	// deploy) count as done. By default partial stops the plan.
	PartialSucceeds bool
	// UndoWhen, when set, has one entry per OnFailure step: the steps (from 0) whose
	// failure runs it, or nil for any step's from OnFailureFrom. A staged rollout rolls
	// back only the stage that failed: its undo names that stage's steps.
	UndoWhen [][]int
}

// Undoes reports whether OnFailure[i] runs when the plan stopped at step failed.
func (p *Plan) Undoes(i, failed int) bool {
	if failed < p.OnFailureFrom {
		return false
	}
	return i >= len(p.UndoWhen) || p.UndoWhen[i] == nil || slices.Contains(p.UndoWhen[i], failed)
}

// planWire is a plan as it travels.
type planWire struct {
	ID              string          `json:"id"`
	Type            string          `json:"type,omitempty"`
	Project         string          `json:"project,omitempty"`
	CorrelationID   string          `json:"correlationId,omitempty"`
	ReplyTo         *string         `json:"replyTo,omitempty"`
	NotAfter        *string         `json:"notAfter,omitempty"`
	Steps           []stepWire      `json:"steps" jsonschema:"minItems=1"`
	OnFailure       []stepWire      `json:"onFailure,omitempty"`
	OnFailureFrom   *int            `json:"onFailureFrom,omitempty" jsonschema:"minimum=0,description=the first step (from 0) whose failure runs onFailure; default 0"`
	PartialSucceeds *bool           `json:"partialSucceeds,omitempty"`
	Params          json.RawMessage `json:"params,omitempty"` // refused: a plan has steps
}

type stepWire struct {
	Type   string          `json:"type"`
	Params json.RawMessage `json:"params"`
	// WhenStepFailed, in an onFailure step only: see Plan.UndoWhen.
	WhenStepFailed []int `json:"whenStepFailed,omitempty" jsonschema:"description=in an onFailure step: run it only when the plan stopped at one of these steps (from 0)"`
}

// StepID is the id of a plan's step: <plan id>:step-<n> for Steps[n-1], and
// <plan id>:undo-<n> for OnFailure[n-1]. Within a project these ids are the plan's: a
// command of its own with such an id would stand for the step.
func StepID(planID string, undo bool, n int) string {
	if undo {
		return planID + ":undo-" + strconv.Itoa(n)
	}
	return planID + ":step-" + strconv.Itoa(n)
}

// ParseStepID is StepID's inverse: whether id names a step of the plan planID, which
// (n from 1), and whether an onFailure step.
func ParseStepID(planID, id string) (undo bool, n int, ok bool) {
	rest, ok := strings.CutPrefix(id, planID+":")
	if !ok {
		return false, 0, false
	}
	if r, isStep := strings.CutPrefix(rest, "step-"); isStep {
		rest = r
	} else if r, isUndo := strings.CutPrefix(rest, "undo-"); isUndo {
		rest, undo = r, true
	} else {
		return false, 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 || strconv.Itoa(n) != rest {
		return false, 0, false
	}
	return undo, n, true
}

// decodePlan decodes and validates a plan completely, every step included, before any
// of it runs; an error names the field's path into the plan (steps[3].params.username).
func decodePlan(cmd *Command, data []byte, o DecodeOptions) *Error {
	var wire planWire
	if err := decodeObject(data, reflect.ValueOf(&wire).Elem(), ""); err != nil {
		if err.Field == "" {
			return &Error{Code: CodeInvalidJSON, Message: "the plan must be a JSON object"}
		}
		return err
	}
	env := envelope{ID: wire.ID, Type: wire.Type, Project: wire.Project, CorrelationID: wire.CorrelationID,
		ReplyTo: wire.ReplyTo, NotAfter: wire.NotAfter}
	if err := checkEnvelope(cmd, &env); err != nil {
		return err
	}
	switch {
	case len(cmd.ID) > maxPlanID:
		return invalid("id", fmt.Sprintf("must be at most %d characters in a plan: its steps' ids add a suffix", maxPlanID))
	case wire.Params != nil:
		return invalid("params", "is not a field of a plan: a plan has steps")
	case len(wire.Steps) == 0:
		return invalid("steps", "is required: at least one step")
	case len(wire.Steps) > MaxPlanSteps:
		return invalid("steps", fmt.Sprintf("must have at most %d steps", MaxPlanSteps))
	case len(wire.OnFailure) > MaxPlanSteps:
		return invalid("onFailure", fmt.Sprintf("must have at most %d steps", MaxPlanSteps))
	}
	if n := wire.OnFailureFrom; n != nil && (*n < 0 || *n >= len(wire.Steps)) {
		return invalid("onFailureFrom", fmt.Sprintf("must be a step's index, from 0 to %d", len(wire.Steps)-1))
	}
	plan := &Plan{PartialSucceeds: wire.PartialSucceeds != nil && *wire.PartialSucceeds}
	if wire.OnFailureFrom != nil {
		plan.OnFailureFrom = *wire.OnFailureFrom
	}
	var err *Error
	if plan.Steps, err = decodeSteps(cmd, wire.Steps, "steps", false, o); err != nil {
		return err
	}
	if plan.OnFailure, err = decodeSteps(cmd, wire.OnFailure, "onFailure", true, o); err != nil {
		return err
	}
	if plan.UndoWhen, err = decodeUndoWhen(wire, plan.OnFailureFrom); err != nil {
		return err
	}
	if err := checkRollbackBaselines(plan); err != nil {
		return err
	}
	cmd.Params = plan
	return nil
}

// decodeUndoWhen reads the onFailure steps' whenStepFailed: nil when none has one.
func decodeUndoWhen(wire planWire, from int) ([][]int, *Error) {
	for i, w := range wire.Steps {
		if w.WhenStepFailed != nil {
			return nil, invalid(fmt.Sprintf("steps[%d].whenStepFailed", i), "is allowed in onFailure steps only")
		}
	}
	var when [][]int
	for i, w := range wire.OnFailure {
		if w.WhenStepFailed == nil {
			continue
		}
		field := fmt.Sprintf("onFailure[%d].whenStepFailed", i)
		if len(w.WhenStepFailed) == 0 {
			return nil, invalid(field, "must name at least one step (leave it out to run after any step's failure)")
		}
		for j, n := range w.WhenStepFailed {
			if n < from || n >= len(wire.Steps) {
				return nil, invalid(fmt.Sprintf("%s[%d]", field, j), fmt.Sprintf("must be a step's index from onFailureFrom (%d) to %d", from, len(wire.Steps)-1))
			}
		}
		if when == nil {
			when = make([][]int, len(wire.OnFailure))
		}
		when[i] = slices.Clone(w.WhenStepFailed)
	}
	return when, nil
}

func decodeSteps(plan *Command, wire []stepWire, field string, undo bool, o DecodeOptions) ([]*Command, *Error) {
	steps := make([]*Command, len(wire))
	for i, w := range wire {
		path := fmt.Sprintf("%s[%d]", field, i)
		ct, ok := LookupType(w.Type)
		switch {
		case w.Type == "":
			return nil, invalid(path+".type", "is required")
		case !ok:
			return nil, &Error{Code: CodeUnknownType, Field: path + ".type", Message: fmt.Sprintf("unknown command type %q", truncate(w.Type, 64))}
		case w.Params == nil:
			return nil, invalid(path+".params", "is required")
		}
		params, err := decodeParams(ct, w.Params, path+".params", plan.Project, undo, o)
		if err != nil {
			return nil, err
		}
		steps[i] = &Command{ID: StepID(plan.ID, undo, i+1), Type: ct.Name, Project: plan.Project,
			CorrelationID: plan.CorrelationID, Params: params}
	}
	return steps, nil
}

// Plan returns the command's plan, when it is one.
func (c *Command) Plan() (*Plan, bool) {
	p, ok := c.Params.(*Plan)
	return p, ok
}

// ResourceKeys names every resource the command changes (see ResourceKey): one for a
// command, those of all its steps for a plan, each once, sorted.
func (c *Command) ResourceKeys() []string {
	p, ok := c.Plan()
	if !ok {
		return []string{c.ResourceKey()}
	}
	var keys []string
	for _, s := range slices.Concat(p.Steps, p.OnFailure) {
		keys = append(keys, s.ResourceKey())
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// encodePlan is the wire form of a plan.
func encodePlan(c *Command, p *Plan) ([]byte, error) {
	wire := map[string]any{"id": c.ID, "type": PlanType}
	for k, v := range map[string]string{"project": c.Project, "correlationId": c.CorrelationID, "replyTo": c.ReplyTo} {
		if v != "" {
			wire[k] = v
		}
	}
	if c.NotAfter != nil {
		wire["notAfter"] = c.NotAfter.Format(time.RFC3339Nano)
	}
	if p.PartialSucceeds {
		wire["partialSucceeds"] = true
	}
	if p.OnFailureFrom > 0 {
		wire["onFailureFrom"] = p.OnFailureFrom
	}
	for field, steps := range map[string][]*Command{"steps": p.Steps, "onFailure": p.OnFailure} {
		if len(steps) == 0 && field == "onFailure" {
			continue
		}
		out := make([]json.RawMessage, len(steps))
		for i, s := range steps {
			v := reflect.ValueOf(s.Params)
			ct, ok := TypeOf(s.Params)
			if !ok || v.Kind() != reflect.Pointer || v.IsNil() {
				return nil, &Error{Code: CodeInvalidCommand, Field: fmt.Sprintf("%s[%d].params", field, i), Message: fmt.Sprintf("%T is not the params of a command type", s.Params)}
			}
			buf := append([]byte(`{"type":`), appendJSONString(nil, ct.Name)...)
			buf = append(buf, `,"params":`...)
			buf = appendFields(buf, v.Elem(), false)
			if field == "onFailure" && i < len(p.UndoWhen) && p.UndoWhen[i] != nil {
				when, _ := json.Marshal(p.UndoWhen[i]) // cannot fail for ints
				buf = append(append(buf, `,"whenStepFailed":`...), when...)
			}
			out[i] = append(buf, '}')
		}
		wire[field] = out
	}
	return json.Marshal(wire)
}
