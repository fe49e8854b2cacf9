package apiops

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Response is a 2xx answer in which APIOps said that it saved the change.
type Response struct {
	StatusCode int
	// Message is APIOps's resultMessage, "" when it sent none.
	Message string
	// DeploymentResult is APIOps's deployment report in the contract's form, whichever
	// of its documented shapes it came in; nil when APIOps deployed nothing or said
	// nothing about it (deploymentResult null or absent).
	DeploymentResult *messages.DeploymentResult
	// DeploymentUnrecognised, when not "", says that APIOps saved the change but sent a
	// deployment report in no shape the worker recognises: whether the change reached
	// the environments is unknown. It describes the body without quoting it.
	DeploymentUnrecognised string
}

// DeployFailed reports whether the change was saved but did not deploy everywhere, or
// may not have.
func (r *Response) DeployFailed() bool {
	return r.DeploymentUnrecognised != "" || r.DeploymentResult != nil && !r.DeploymentResult.Success
}

// CodeUnrecognisedResponse is the error code of a 2xx answer the reader does not
// recognise: APIOps may or may not have saved the change, so it is never taken for
// success.
const CodeUnrecognisedResponse = messages.CodeUnrecognisedResponse

// readSuccess reads a 2xx answer. It returns a *Response only when the body says, in
// one of the shapes APIOps documents, that the change was saved; a body that says it
// failed is a Permanent *Error with APIOps's resultMessage, and any other body a
// Permanent *Error coded CodeUnrecognisedResponse that names the body's size and
// content type but never quotes it: it may echo a secret that was sent.
func readSuccess(op string, resp *http.Response, data []byte) (*Response, error) {
	unrecognised := func() error {
		return &Error{Op: op, StatusCode: resp.StatusCode, Kind: Permanent, Code: CodeUnrecognisedResponse,
			Description: fmt.Sprintf("APIOps answered %d with a body the worker does not recognise (%s)", resp.StatusCode, describeBody(resp, data))}
	}
	body, ok := object(data)
	if !ok {
		return nil, unrecognised()
	}
	saved, known := verdict(body)
	if !known {
		return nil, unrecognised()
	}
	message, _ := Member[string](body, "resultMessage")
	if !saved {
		e := &Error{Op: op, StatusCode: resp.StatusCode, Kind: Permanent, Description: message}
		if e.Description == "" {
			e.Description = "APIOps answered that the request failed, without saying why"
		}
		return nil, e
	}
	r := &Response{StatusCode: resp.StatusCode, Message: message}
	if r.DeploymentResult, ok = readDeployment(body["deploymentResult"]); !ok {
		// The change was saved: failing it would have a plan undo what happened.
		r.DeploymentUnrecognised = fmt.Sprintf("APIOps saved the change, but its deployment report is in no shape the worker recognises (%s)", describeBody(resp, data))
	}
	return r, nil
}

// verdict reads the top-level success or status: saved is true for success: true or
// status: SUCCESS. known is false when neither is there, either has another value, or
// the two disagree.
func verdict(body map[string]json.RawMessage) (saved, known bool) {
	success, hasSuccess := Member[bool](body, "success")
	status, hasStatus := Member[string](body, "status")
	if raw, present := body["success"]; present && !hasSuccess && !isJSONNull(raw) {
		return false, false
	}
	if raw, present := body["status"]; present && (!hasStatus && !isJSONNull(raw) || hasStatus && status != "SUCCESS" && status != "FAILURE") {
		return false, false
	}
	switch {
	case hasSuccess && hasStatus:
		return success, success == (status == "SUCCESS")
	case hasSuccess:
		return success, true
	case hasStatus:
		return status == "SUCCESS", true
	}
	return false, false
}

// maxDeploymentDepth bounds how deeply nested detailList entries are followed; the
// pages show them flat, the schema allows nesting.
const maxDeploymentDepth = 8

// readDeployment normalises a deploymentResult into the contract's form. Its
// per-environment entries come from environmentResults, deploymentResults, the per-pod
// detailList (grouped by envName: an environment failed if any of its pods did) and
// deployedEnvironments/failedEnvironments, merged by environment name. The overall
// success is the report's own success (or deployed) and every environment's; a report
// with neither says nothing anyone could rely on, and ok is false. null, absent or {}
// is no deployment: (nil, true).
func readDeployment(raw json.RawMessage) (d *messages.DeploymentResult, ok bool) {
	if raw == nil || isJSONNull(raw) {
		return nil, true
	}
	obj, isObject := object(raw)
	if !isObject {
		return nil, false
	}
	if len(obj) == 0 {
		return nil, true
	}
	envs := &environments{}
	for _, list := range []string{"environmentResults", "deploymentResults"} {
		if !envs.addResults(obj[list]) {
			return nil, false
		}
	}
	if pods, _ := array(obj["detailList"]); len(pods) == 0 && HasMember(obj, "envName") {
		// The schema's DeploymentResult is itself a pod: one that stands alone.
		if !envs.addPod(obj, "", 0) {
			return nil, false
		}
	} else if !envs.addPods(obj, "", 0) {
		return nil, false
	}
	for _, list := range []struct {
		name    string
		success bool
	}{{"deployedEnvironments", true}, {"failedEnvironments", false}} {
		if !envs.addNames(obj[list.name], list.success) {
			return nil, false
		}
	}
	explicit, hasExplicit := true, false
	for _, name := range []string{"success", "deployed"} {
		value, ok := Member[bool](obj, name)
		if HasMember(obj, name) && !ok {
			return nil, false
		}
		explicit, hasExplicit = explicit && (value || !ok), hasExplicit || ok
	}
	if !hasExplicit && len(envs.results) == 0 {
		return nil, false
	}
	d = &messages.DeploymentResult{Success: explicit, EnvironmentResults: envs.results}
	for _, e := range envs.results {
		d.Success = d.Success && e.Success
	}
	d.Message, _ = Member[string](obj, "message")
	if d.Message == "" && len(envs.results) == 0 {
		d.Message, _ = Member[string](obj, "detail")
	}
	return d, true
}

// environments collects per-environment results in the order they first appear.
type environments struct {
	results []messages.EnvironmentResult
}

func (e *environments) add(name string, success bool, message string) {
	i := slices.IndexFunc(e.results, func(r messages.EnvironmentResult) bool { return r.EnvironmentName == name })
	if i < 0 {
		e.results = append(e.results, messages.EnvironmentResult{EnvironmentName: name, Success: success, Message: message})
		return
	}
	r := &e.results[i]
	r.Success = r.Success && success
	if message != "" && r.Message == "" {
		r.Message = message
	} else if message != "" && !strings.Contains(r.Message, message) {
		r.Message += "; " + message
	}
}

// addResults reads [{environmentName, success, message?}].
func (e *environments) addResults(raw json.RawMessage) bool {
	items, ok := array(raw)
	if !ok {
		return false
	}
	for _, item := range items {
		obj, isObject := object(item)
		name, hasName := Member[string](obj, "environmentName")
		success, hasSuccess := Member[bool](obj, "success")
		if !isObject || !hasName || name == "" || !hasSuccess {
			return false
		}
		message, _ := Member[string](obj, "message")
		e.add(name, success, message)
	}
	return true
}

// addNames reads a list of environment names that all deployed, or all failed.
func (e *environments) addNames(raw json.RawMessage, success bool) bool {
	items, ok := array(raw)
	if !ok {
		return false
	}
	for _, item := range items {
		var name string
		if json.Unmarshal(item, &name) != nil || name == "" {
			return false
		}
		e.add(name, success, "")
	}
	return true
}

// addPods reads obj's detailList: each entry is a pod ({envName, podName, success,
// detail}), or a group with a detailList of its own whose pods inherit its envName.
func (e *environments) addPods(obj map[string]json.RawMessage, env string, depth int) bool {
	items, ok := array(obj["detailList"])
	if !ok || len(items) > 0 && depth == maxDeploymentDepth {
		return false
	}
	for _, item := range items {
		pod, isObject := object(item)
		if !isObject || !e.addPod(pod, env, depth+1) {
			return false
		}
	}
	return true
}

// addPod reads one entry of a detailList; env is its group's environment.
func (e *environments) addPod(pod map[string]json.RawMessage, env string, depth int) bool {
	if HasMember(pod, "envName") {
		name, ok := Member[string](pod, "envName")
		if !ok || name == "" {
			return false
		}
		env = name
	}
	success, hasSuccess := Member[bool](pod, "success")
	if HasMember(pod, "success") && !hasSuccess {
		return false
	}
	if nested, _ := array(pod["detailList"]); len(nested) > 0 {
		if !e.addPods(pod, env, depth) {
			return false
		}
		if !hasSuccess || success || env == "" {
			return true // its pods said it
		}
	}
	if !hasSuccess || env == "" {
		return false
	}
	e.add(env, success, podText(pod, success))
	return true
}

// podText is one pod's part of its environment's message: "<pod>: <detail>".
func podText(pod map[string]json.RawMessage, success bool) string {
	name, _ := Member[string](pod, "podName")
	detail, _ := Member[string](pod, "detail")
	if detail == "" {
		detail = "failed"
		if success {
			detail = "deployed"
		}
	}
	if name == "" {
		return detail
	}
	return name + ": " + detail
}

// readError reads a non-2xx answer. APIOps's text comes from resultMessage (today's
// shape) or error_description (the pages the project started from); a body in
// neither shape, such as a proxy's page, is described by size and type, not quoted.
func readError(op string, resp *http.Response, data []byte, now time.Time) *Error {
	e := &Error{
		Op:         op,
		StatusCode: resp.StatusCode,
		Kind:       kindOfStatus(resp.StatusCode),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now),
	}
	body, ok := object(data)
	if ok {
		code, _ := Member[string](body, "error")
		if isCode(code) {
			e.Code = code
		}
		e.Description, _ = Member[string](body, "error_description")
		if message, ok := Member[string](body, "resultMessage"); ok && e.Description == "" {
			e.Description = message
		}
		if e.RetryAfter == 0 {
			e.RetryAfter = retryAfterMember(body)
		}
	}
	if e.Code == "" && e.Description == "" {
		e.Err = fmt.Errorf("unrecognised body (%s)", describeBody(resp, data))
	}
	return e
}

// isCode reports whether s reads as an error code (bad_request), not a phrase (Spring's
// default error page says "error": "Bad Request").
func isCode(s string) bool {
	return s != "" && len(s) <= 64 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == ""
}

// retryAfterMember reads a rate-limit answer's "retry_after" (seconds).
func retryAfterMember(body map[string]json.RawMessage) time.Duration {
	raw, ok := body["retry_after"]
	if !ok {
		return 0
	}
	var secs float64
	if json.Unmarshal(raw, &secs) != nil {
		var text string
		if json.Unmarshal(raw, &text) != nil {
			return 0
		}
		n, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return 0
		}
		secs = n
	}
	if secs <= 0 || secs > maxRetryAfterSeconds {
		return 0
	}
	return time.Duration(secs * float64(time.Second))
}

// maxRetryAfterSeconds keeps a absurd retry_after from overflowing a Duration; the
// worker clamps what it honours far lower.
const maxRetryAfterSeconds = 7 * 24 * 3600

// describeBody says what a body was without quoting it.
func describeBody(resp *http.Response, data []byte) string {
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mediaType == "" {
		mediaType = "no content type"
	}
	if len(data) > maxResponseBody {
		return fmt.Sprintf("%s, more than %d bytes", mediaType, maxResponseBody)
	}
	return fmt.Sprintf("%s, %d bytes", mediaType, len(data))
}

// object decodes a JSON object with its members under their exact names: encoding/json
// would match a struct's fields case-insensitively, and "Success" is not "success".
func object(data []byte) (map[string]json.RawMessage, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil || obj == nil {
		return nil, false
	}
	return obj, true
}

// array decodes a JSON array; absent or null is an empty one.
func array(raw json.RawMessage) ([]json.RawMessage, bool) {
	if raw == nil || isJSONNull(raw) {
		return nil, true
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, false
	}
	return items, true
}

func isJSONNull(raw json.RawMessage) bool { return strings.TrimSpace(string(raw)) == "null" }

// Member decodes the member name of obj, an answer's body or one of the entries Read
// returns, as a T: ok is false when it is absent, null or not a T.
func Member[T any](obj map[string]json.RawMessage, name string) (value T, ok bool) {
	raw, present := obj[name]
	if !present || isJSONNull(raw) || json.Unmarshal(raw, &value) != nil {
		var zero T
		return zero, false
	}
	return value, true
}

// HasMember reports whether obj has the member name, not null: with Member, it tells a
// member that is missing from one of another type.
func HasMember(obj map[string]json.RawMessage, name string) bool {
	raw, ok := obj[name]
	return ok && !isJSONNull(raw)
}
