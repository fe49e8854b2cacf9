package messages

import (
	"slices"
	"strings"
	"time"
)

// Status is a command's final status.
type Status string

const (
	StatusSucceeded Status = "succeeded" // saved and deployed to every environment
	StatusPartial   Status = "partial"   // saved, but some environment failed to deploy
	StatusFailed    Status = "failed"    // APIOps refused it, or retries ran out
	StatusRejected  Status = "rejected"  // invalid; APIOps was not called
	StatusExpired   Status = "expired"   // notAfter passed before it could run
	StatusSkipped   Status = "skipped"   // a plan's step that did not run: an earlier one failed
)

// HeaderFailedStep is the index (from 0) of the step that stopped a plan, on its dead
// letter.
const HeaderFailedStep = "Apiops-Failed-Step"

// Error codes of a result's error that the worker sets itself. Others are APIOps's own
// error codes (bad_request, not_found, …) or http_<status> when APIOps gave none.
const (
	CodeInvalidJSON      = "invalid_json"
	CodeInvalidCommand   = "invalid_command"
	CodeUnknownType      = "unknown_type"
	CodeSubjectMismatch  = "subject_mismatch"
	CodeExpired          = "expired"
	CodeRetriesExhausted = "retries_exhausted"
	CodeDeployFailed     = "deploy_failed"
	// CodeIDReused rejects a command whose id finished, in the same project, as a
	// command of another type.
	CodeIDReused = "id_reused"
	// CodeStepFailed: a plan stopped at a step that did not succeed; the plan's
	// failedStep and that step's result say which and why.
	CodeStepFailed = "step_failed"
	// CodeVerifyFailed: a proxy.verify's deadline passed before what it checks held;
	// the result's verification says what was seen per environment and pod.
	CodeVerifyFailed = "verify_failed"
	// CodeUnrecognisedResponse: APIOps answered 2xx with a body in none of the shapes
	// it documents, so whether it saved the change is unknown; the message gives the
	// body's size and content type, never its text.
	CodeUnrecognisedResponse = "unrecognised_response"
)

// knownCodes are the error codes the contract names: the worker's own, network_error,
// and those APIOps documents.
var knownCodes = map[string]bool{
	CodeInvalidJSON: true, CodeInvalidCommand: true, CodeUnknownType: true, CodeSubjectMismatch: true,
	CodeExpired: true, CodeRetriesExhausted: true, CodeDeployFailed: true, CodeIDReused: true, CodeStepFailed: true, CodeVerifyFailed: true,
	CodeUnrecognisedResponse: true, "network_error": true, "bad_request": true, "not_found": true, "unauthorized_client": true,
}

// KnownCodes lists the error codes the contract names, for metrics to initialise.
func KnownCodes() []string {
	codes := make([]string, 0, len(knownCodes))
	for c := range knownCodes {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return codes
}

// PublicCode is code where it may leave the result for telemetry: a code the contract
// names, or http_<status>; any other is "other". APIOps's own codes are text APIOps
// chose and might quote what it was sent, so traces and metrics do not carry them.
func PublicCode(code string) string {
	if knownCodes[code] {
		return code
	}
	if n, ok := strings.CutPrefix(code, "http_"); ok && len(n) == 3 && n[0] >= '1' && n[0] <= '5' &&
		strings.Trim(n, "0123456789") == "" {
		return code
	}
	return "other"
}

// Headers of results and dead letters.
const (
	HeaderMsgID           = "Nats-Msg-Id"
	HeaderCommandID       = "Apiops-Command-Id"
	HeaderStatus          = "Apiops-Status"
	HeaderErrorCode       = "Apiops-Error-Code"
	HeaderError           = "Apiops-Error"
	HeaderAttempts        = "Apiops-Attempts"
	HeaderOriginalSubject = "Apiops-Original-Subject"
	HeaderRedacted        = "Apiops-Redacted"
	// HeaderCommandSeq is a dead letter's command's sequence in the command stream.
	HeaderCommandSeq = "Apiops-Command-Seq"
	// HeaderTruncated is on a dead letter whose command was too large to keep whole
	// beside its headers: the original size in bytes. Such a dead letter is not
	// replayed.
	HeaderTruncated = "Apiops-Truncated"
	HeaderReplayOf  = "Apiops-Replay-Of"
	// HeaderErrorField is on a dead letter whose error names a field (a rejection's
	// invalid field): its path, as the result's error.field, e.g.
	// params.keyStoreEnvironmentList[0].keyStoreType. Dead letters stored before it
	// was introduced lack it.
	HeaderErrorField = "Apiops-Error-Field"
)

// MsgID is the Nats-Msg-Id of a command and of its result and dead letter: the
// command's identity, its project and id. "/" separates them because neither may hold
// it, while both may hold ":".
func MsgID(project, id string) string { return project + "/" + id }

// Result is the outcome of one command, published once to the result subject and to the
// command's replyTo. It never holds a secret.
type Result struct {
	ID               string            `json:"id,omitempty"`
	Type             string            `json:"type"`
	Project          string            `json:"project"`
	CorrelationID    string            `json:"correlationId,omitempty"`
	Status           Status            `json:"status" jsonschema:"enum=succeeded,enum=partial,enum=failed,enum=rejected,enum=expired,enum=skipped"`
	Attempts         int               `json:"attempts"`
	ReceivedAt       time.Time         `json:"receivedAt"`
	FinishedAt       time.Time         `json:"finishedAt"`
	HTTPStatus       int               `json:"httpStatus,omitempty"`
	DeploymentResult *DeploymentResult `json:"deploymentResult,omitempty"`
	Error            *Error            `json:"error,omitempty"`
	Warnings         []string          `json:"warnings,omitempty"`
	// Verification is what a proxy.verify saw at its last reads, per environment.
	Verification []EnvironmentVerification `json:"verification,omitempty"`
	// A plan's result: the index (from 0) of the step that stopped it, and the result
	// of every step and onFailure step, in order; the steps after the one that stopped
	// it are skipped.
	FailedStep *int     `json:"failedStep,omitempty"`
	Steps      []Result `json:"steps,omitempty"`
	OnFailure  []Result `json:"onFailure,omitempty"`
	// Replayed marks a reply to a command whose id had finished before, as the same
	// command: this is that command's stored result, and nothing ran again. Results in
	// APIOPS_RESULTS never carry it.
	Replayed bool `json:"replayed,omitempty"`
}

// DeploymentResult is APIOps's report of deploying a change to each environment.
type DeploymentResult struct {
	Success            bool                `json:"success"`
	Message            string              `json:"message,omitempty"`
	EnvironmentResults []EnvironmentResult `json:"environmentResults,omitempty"`
}

// EnvironmentResult is one environment's part of a DeploymentResult.
type EnvironmentResult struct {
	EnvironmentName string `json:"environmentName"`
	Success         bool   `json:"success"`
	Message         string `json:"message,omitempty"`
}

// EnvironmentVerification is what a proxy.verify last saw in one environment.
type EnvironmentVerification struct {
	EnvironmentName string `json:"environmentName"`
	// Verified: deployed, no redeploy required, every pod active on the revision and
	// nothing inconsistent (and the keystores read back, if asked).
	Verified bool `json:"verified"`
	// Problem says why it is not verified, "" when it is.
	Problem          string            `json:"problem,omitempty"`
	Revision         int               `json:"revision,omitempty"`
	Deployed         bool              `json:"deployed"`
	RedeployRequired bool              `json:"redeployRequired"`
	PodsActive       int               `json:"podsActive"`
	PodCount         int               `json:"podCount,omitempty"`
	Inconsistent     bool              `json:"inconsistent"`
	Pods             []PodVerification `json:"pods,omitempty"`
	// Reads counts the rounds of reads made for this environment.
	Reads int `json:"reads"`
}

// PodVerification is one pod as route-health reported it.
type PodVerification struct {
	PodName  string `json:"podName"`
	Active   bool   `json:"active"`
	Revision int    `json:"revision,omitempty"`
}

// EnvironmentCounts counts the environments that deployed and those that did not.
func (d *DeploymentResult) EnvironmentCounts() (ok, failed int) {
	if d == nil {
		return 0, 0
	}
	for _, e := range d.EnvironmentResults {
		if e.Success {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}

// Rejection is the result of a command that Decode refused: status rejected (or expired
// for CodeExpired), no APIOps call. cmd is what Decode returned with the error.
func Rejection(cmd *Command, err error, at time.Time) *Result {
	e, ok := err.(*Error)
	if !ok {
		e = &Error{Code: CodeInvalidCommand, Message: err.Error()}
	}
	status := StatusRejected
	if e.Code == CodeExpired {
		status = StatusExpired
	}
	return &Result{
		ID: cmd.ID, Type: cmd.Type, Project: cmd.Project, CorrelationID: cmd.CorrelationID,
		Status: status, ReceivedAt: at, FinishedAt: at, Error: e,
	}
}
