package worker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/apiops-worker/apiops-worker/messages"
)

// runPlan runs a plan's steps in order, each as a command of its own: looked up by
// its id, executed with retries, its outcome stored and its result published. A step
// that finished before (the plan was redelivered after a crash, a failover or a
// shutdown) is not run again: its stored result stands, so the plan resumes where it
// stopped. The first step that does not succeed stops the plan; the steps after it
// are skipped and OnFailure runs. runPlan returns the plan's result, for outcome to
// store and publish like any command's; errHandBack or errDropped when the plan must
// stop where it is and resume from its redelivery.
//
// The plan holds the resources of all its steps from start to end, so commands
// published after it for any of them wait for it, and it waits for those before it.
func (w *Worker) runPlan(ctx context.Context, t *task, plan *messages.Plan) (*messages.Result, error) {
	res := &messages.Result{ID: t.cmd.ID, Type: messages.PlanType, Project: t.cmd.Project,
		CorrelationID: t.cmd.CorrelationID, Status: messages.StatusSucceeded, ReceivedAt: t.received}
	for i, step := range plan.Steps {
		if res.FailedStep != nil {
			res.Steps = append(res.Steps, skipped(step))
			continue
		}
		sr, err := w.runStep(ctx, t, step, "step", i)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, *sr)
		res.Attempts += sr.Attempts
		switch {
		case sr.Status == messages.StatusSucceeded:
		case sr.Status == messages.StatusPartial && plan.PartialSucceeds:
			res.Status = messages.StatusPartial
		default:
			res.FailedStep = &i
			res.Status, res.Error = stoppedAt(i, len(plan.Steps), sr)
		}
	}
	// An expired plan never started: nothing to undo; nor is there when the step that
	// failed comes before the first one onFailure undoes.
	if res.FailedStep != nil && res.Status != messages.StatusExpired && *res.FailedStep >= plan.OnFailureFrom {
		for i, step := range plan.OnFailure {
			sr, err := w.runStep(ctx, t, step, "undo", i)
			if err != nil {
				return nil, err
			}
			res.OnFailure = append(res.OnFailure, *sr)
		}
	}
	res.FinishedAt = w.cfg.Clock.Now().UTC()
	return res, nil
}

// runStep runs one step of the plan t: step i of its steps (kind "step") or of its
// onFailure (kind "undo"). The first step carries the plan's notAfter: a plan that
// has not started by then does not start.
func (w *Worker) runStep(ctx context.Context, t *task, step *messages.Command, kind string, i int) (*messages.Result, error) {
	cmd := step
	if kind == "step" && i == 0 && t.cmd.NotAfter != nil {
		c := *step
		c.NotAfter = t.cmd.NotAfter
		cmd = &c
	}
	st := &task{msg: t.msg, src: t.src, seq: t.seq, delivered: t.delivered, received: t.received, cmd: cmd,
		keys: t.keys, term: t.term, waitCtx: t.waitCtx, planOf: t}
	defer w.lockID(st.commandKey().String())() // as process does for a command
	w.traceStep(t, st, kind, i)
	res, err := w.outcome(ctx, st)
	st.traceEnd(res, err)
	if err != nil {
		return nil, err
	}
	w.logOutcome(st, res)
	return res, nil
}

// stoppedAt is the plan's status and error when step i of n came to sr.
func stoppedAt(i, n int, sr *messages.Result) (messages.Status, *messages.Error) {
	if i == 0 && sr.Status == messages.StatusExpired {
		return messages.StatusExpired, &messages.Error{Code: messages.CodeExpired, Field: "notAfter", Message: "notAfter passed before the plan could start"}
	}
	why := string(sr.Status)
	if sr.Error != nil {
		why += ": " + sr.Error.Message
	}
	return messages.StatusFailed, &messages.Error{Code: messages.CodeStepFailed, Field: fmt.Sprintf("steps[%d]", i),
		Message: fmt.Sprintf("step %d of %d (%s) did not succeed (%s); the later steps were skipped", i+1, n, sr.Type, why)}
}

func skipped(step *messages.Command) messages.Result {
	return messages.Result{ID: step.ID, Type: step.Type, Project: step.Project, CorrelationID: step.CorrelationID, Status: messages.StatusSkipped}
}

// storedResult is the result a record holds.
func storedResult(f *finished) (*messages.Result, error) {
	var res messages.Result
	if err := json.Unmarshal(f.Result, &res); err != nil {
		return nil, fmt.Errorf("decode a stored result: %w", err)
	}
	return &res, nil
}

// subjectOf is the command subject t stands for, which its result and dead letter
// follow: for a plan's step the subject the step would have as a command of its own.
// It is built from the project and the type only, and only as far as they are well
// formed (a malformed project is messages.InvalidProject, a type that is none
// messages.UnknownType), so that a publisher can make the worker publish on no subject
// of its choosing, and on none longer than a project name allows.
func (w *Worker) subjectOf(t *task) string {
	project, typeName := t.cmd.Project, t.cmd.Type
	if messages.CheckProject(project) != "" {
		project = messages.InvalidProject
	}
	if _, known := messages.LookupType(typeName); !known && typeName != messages.PlanType {
		typeName = messages.UnknownType
	}
	return w.subjects.Command(project, typeName)
}

// bodyOf is the command t stands for, as it travels: a plan's step as a command of its
// own, which its dead letter holds and a replay publishes.
func (w *Worker) bodyOf(t *task) []byte {
	if t.planOf != nil {
		if body, err := t.cmd.Encode(); err == nil {
			return body
		}
	}
	return t.msg.Data()
}
