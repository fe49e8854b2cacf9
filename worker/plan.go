package worker

import (
	"context"
	"fmt"

	"github.com/apiops-worker/apiops-worker/messages"
)

// runPlan runs a plan's steps in order, each as a command of its own: looked up by
// its id, executed with retries, its outcome stored and its result published. A step
// that finished before (the plan was redelivered after a crash, a failover or a
// shutdown) is not run again: its stored result stands, so the plan resumes where it
// stopped. The first step that does not succeed stops the plan; the steps after it
// are skipped and OnFailure runs. runPlan returns the plan's result, for decide to
// store and publish like any command's; errHandBack or errDropped when the plan must
// stop where it is and resume from its redelivery.
//
// The plan holds the resources of all its steps from start to end, so commands
// published after it for any of them wait for it, and it waits for those before it.
// See docs/design/plans.md.
func (w *Worker) runPlan(ctx context.Context, t *task, plan *messages.Plan, decide stepDecider) (*messages.Result, error) {
	res := &messages.Result{ID: t.cmd.ID, Type: messages.PlanType, Project: t.cmd.Project,
		CorrelationID: t.cmd.CorrelationID, Status: messages.StatusSucceeded, ReceivedAt: t.received}
	for i, step := range plan.Steps {
		if res.FailedStep != nil {
			res.Steps = append(res.Steps, skipped(step))
			continue
		}
		sr, err := w.runStep(ctx, t, step, "step", i, decide)
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
			if !plan.Undoes(i, *res.FailedStep) { // another stage's undo
				res.OnFailure = append(res.OnFailure, skipped(step))
				continue
			}
			step, unresolved := resolveRollback(plan, res, step) // rollback.go
			if unresolved != nil {
				res.OnFailure = append(res.OnFailure, *unresolved)
				continue
			}
			sr, err := w.runStep(ctx, t, step, "undo", i, decide)
			if err != nil {
				return nil, err
			}
			res.OnFailure = append(res.OnFailure, *sr)
		}
	}
	res.FinishedAt = w.cfg.Clock.Now().UTC()
	return res, nil
}

// stepDecider comes to a step's result as to a command's of its own, from its record
// or by running it, and makes it final: Worker.decide.
type stepDecider func(ctx context.Context, step *task) (*messages.Result, error)

// runStep runs one step of the plan t: step i of its steps (kind "step") or of its
// onFailure (kind "undo"). The first step carries the plan's notAfter: a plan that
// has not started by then does not start.
func (w *Worker) runStep(ctx context.Context, t *task, step *messages.Command, kind string, i int, decide stepDecider) (*messages.Result, error) {
	cmd := step
	if kind == "step" && i == 0 && t.cmd.NotAfter != nil {
		c := *step
		c.NotAfter = t.cmd.NotAfter
		cmd = &c
	}
	st := &task{msg: t.msg, src: t.src, seq: t.seq, delivered: t.delivered, received: t.received, cmd: cmd,
		keys: t.keys, term: t.term, waitCtx: t.waitCtx, planOf: t}
	defer w.ids.lock(st.commandKey().String())() // as process does for a command
	w.traceStep(t, st, kind, i)
	res, err := decide(ctx, st)
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
