package worker

import (
	"cmp"
	"strconv"
	"strings"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/messages"
)

// What APIOps's answer comes to. APIOps's texts and codes may quote the request they
// answer, so they pass the command's scrubber (its opened passwords and files) before
// they reach a result, a dead letter, a record, a reply, a log or a span, and a code the
// contract does not name becomes http_<status>.

// successOutcome is the outcome of a change APIOps saved: partial when some
// environment did not deploy, with the report's message, else APIOps's resultMessage,
// else the environments that failed; partial too when the report is unreadable, or
// missing although the command asked to deploy to targets (a server whose PATCH has no
// deploy field saves and ignores it).
func successOutcome(resp *apiops.Response, targets []string, scrub *messages.Scrubber) outcome {
	d := scrubDeployment(resp.DeploymentResult, scrub)
	o := outcome{status: messages.StatusSucceeded, httpStatus: resp.StatusCode, deployment: d}
	switch {
	case resp.DeploymentUnrecognised != "":
		o.status = messages.StatusPartial
		o.err = &messages.Error{Code: messages.CodeUnrecognisedResponse, Message: resp.DeploymentUnrecognised}
	case d == nil && len(targets) > 0:
		o.status = messages.StatusPartial
		o.err = &messages.Error{Code: messages.CodeDeployFailed, Message: "APIOps saved the change but reported no deployment to " +
			strings.Join(targets, ", ") + ": this APIOps may not deploy from this endpoint"}
	case resp.DeployFailed():
		o.status = messages.StatusPartial
		o.err = &messages.Error{Code: messages.CodeDeployFailed, Message: cmp.Or(d.Message, scrub.Scrub(resp.Message), failedEnvironments(d))}
	}
	return o
}

func scrubDeployment(d *messages.DeploymentResult, scrub *messages.Scrubber) *messages.DeploymentResult {
	if d == nil {
		return nil
	}
	out := *d
	out.Message = scrub.Scrub(d.Message)
	out.EnvironmentResults = make([]messages.EnvironmentResult, len(d.EnvironmentResults))
	for i, e := range d.EnvironmentResults {
		e.Message = scrub.Scrub(e.Message)
		out.EnvironmentResults[i] = e
	}
	return &out
}

func failedEnvironments(d *messages.DeploymentResult) string {
	var failed []string
	for _, e := range d.EnvironmentResults {
		if !e.Success {
			failed = append(failed, e.EnvironmentName)
		}
	}
	if len(failed) == 0 {
		return "APIOps reported that the deployment failed"
	}
	return "deployment failed in " + strings.Join(failed, ", ")
}

func failedOutcome(apiErr *apiops.Error, err error, scrub *messages.Scrubber) outcome {
	if apiErr == nil {
		return outcome{status: messages.StatusFailed, err: &messages.Error{Code: "network_error", Message: scrub.Scrub(err.Error())}}
	}
	return outcome{
		status:     messages.StatusFailed,
		httpStatus: apiErr.StatusCode,
		err:        &messages.Error{Code: resultCode(apiErr), Message: scrub.Scrub(apiErr.Message())},
	}
}

// resultCode is apiErr's code where the contract names it, else http_<status>: a code
// is APIOps's text too, and could quote what it was sent.
func resultCode(apiErr *apiops.Error) string {
	code := apiErr.ResultCode()
	switch {
	case messages.PublicCode(code) == code:
		return code
	case apiErr.StatusCode != 0:
		return "http_" + strconv.Itoa(apiErr.StatusCode)
	}
	return "network_error"
}
