package worker

import (
	"fmt"

	"github.com/apiops-worker/apiops-worker/messages"
)

// resolveRollback fills in the revision of an onFailure proxy.rollback that leaves it
// out: the revision that the verify of Plan.RollbackBaseline saw. That verify's result
// is stored with the plan's steps, so a plan resumed after a crash or a failover rolls
// back to the same revision. unresolved is the step's
// result when there is nothing to roll back to (the verify did not get to read the
// environment).
func resolveRollback(plan *messages.Plan, res *messages.Result, step *messages.Command) (_ *messages.Command, unresolved *messages.Result) {
	rb, ok := step.Params.(*messages.ProxyRollback)
	if !ok || rb.Revision != 0 {
		return step, nil
	}
	if j, ok := plan.RollbackBaseline(step); ok && j < len(res.Steps) {
		for _, seen := range res.Steps[j].Verification {
			if seen.EnvironmentName == rb.EnvironmentName && seen.Revision > 0 {
				resolved := *rb
				resolved.Revision = seen.Revision
				c := *step
				c.Params = &resolved
				return &c, nil
			}
		}
	}
	return nil, &messages.Result{ID: step.ID, Type: step.Type, Project: step.Project, CorrelationID: step.CorrelationID,
		Status: messages.StatusFailed, Error: &messages.Error{Code: messages.CodeInvalidCommand, Field: "params.revision",
			Message: fmt.Sprintf("no revision to roll back to: the plan's verify of %s saw no revision in %s", rb.APIProxyName, rb.EnvironmentName)}}
}
