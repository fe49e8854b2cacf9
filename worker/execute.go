package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/messages"
)

// executor sends a command's request to APIOps until APIOps settles it: permanent
// answers end the command; transient failures are retried as the retry policy says
// (retry.go); while the command's project is paused (gate.go) the command waits without
// using its budget, one waiting command probing. Each request takes a request slot
// (fairness.go) for its own duration only: a command waiting for a retry, a
// Retry-After or a pause takes none. No request starts unless this instance may start
// one (mayStart), and the APIOps client checks again just before it sends.
type executor struct {
	tracing
	api        APIOps
	gates      *gates
	slots      *slots
	policy     retryPolicy
	probeEvery time.Duration // how often a paused project's probe is sent
	lease      *lease
	nc         *nats.Conn
	records    *store // for the attempt counts; set up with the streams (Setup)
	observer   Observer
	clock      Clock
	log        *zap.Logger
}

// outcome is what executing a command came to.
type outcome struct {
	status     messages.Status
	err        *messages.Error
	httpStatus int
	deployment *messages.DeploymentResult
	// verification is what a proxy.verify saw (verify.go).
	verification []messages.EnvironmentVerification
}

// answer is what one request came to; sent is false when none went out (the instance
// was fenced meanwhile), expired when the command's notAfter passed first.
type answer struct {
	sent    bool
	expired *outcome
	resp    *apiops.Response
	err     error
	apiErr  *apiops.Error // err's, if APIOps answered
	failure string        // err's code, for the span and the next attempt ("" for none)
}

// verdict is what the executor does after an answer.
type verdict int

const (
	settled    verdict = iota // the outcome is final
	handBack                  // stop: the command goes back to the stream (shutdown)
	againNow                  // not charged: send again as soon as the gate lets it
	againLater                // charged: send again when the retry policy says
)

// errWaitEnded is why a wait of t's ended: its waitCtx did. execute says which way
// (stopErr).
var errWaitEnded = errors.New("the command's wait ended")

// execute sends t's request until APIOps settles it, the policy gives up, or t must
// stop: errHandBack when ctx ends first (shutdown), errDropped when the lease is lost.
func (e *executor) execute(ctx context.Context, t *task) (outcome, error) {
	o, err := e.settle(ctx, t)
	if errors.Is(err, errWaitEnded) {
		return outcome{}, stopErr(t)
	}
	return o, err
}

// settle is execute's loop; a wait of t's that ended is errWaitEnded.
func (e *executor) settle(ctx context.Context, t *task) (outcome, error) {
	req := t.cmd.APIRequest()
	defer clear(req.Body) // it may hold opened secrets: no copy of ours outlives the command
	scrub := t.cmd.Scrubber()
	gate := e.gates.of(t.cmd.Project)
	retries := e.policy.forCommand()
	retryOf := "" // why the next request is sent again
	if t.attempts.Requests > 0 {
		retryOf = "redelivered"
	}
	for {
		a, err := e.sendOnce(ctx, t, gate, req, retryOf)
		switch {
		case err != nil:
			return outcome{}, err
		case a.expired != nil:
			return *a.expired, nil
		case !a.sent:
			continue
		}
		retryOf = a.failure
		o, next := e.judge(ctx, t, gate, a, scrub)
		switch next {
		case settled:
			return o, nil
		case handBack:
			return outcome{}, errHandBack
		case againNow:
			continue
		}
		delay, final := retries.next(t.attempts.Charged, retryAfter(a.apiErr))
		if final {
			o.err = &messages.Error{Code: messages.CodeRetriesExhausted, Message: fmt.Sprintf("%d attempts failed; last: %s", t.attempts.Charged, o.err.Message)}
			return o, nil
		}
		if err := e.sleep(t, delay); err != nil {
			return outcome{}, err
		}
	}
}

// sendOnce waits until t may send a request (admit) and sends one. Whatever it waited
// for is given back when it returns.
func (e *executor) sendOnce(ctx context.Context, t *task, gate *gate, req messages.APIRequest, retryOf string) (answer, error) {
	release, expired, err := e.admit(t, gate)
	switch {
	case err != nil:
		return answer{}, err
	case expired != nil:
		return answer{expired: expired}, nil
	case release == nil:
		return answer{}, nil
	}
	defer release()
	return e.request(ctx, t, req, retryOf), nil
}

// admit waits until t may send a request: the lease, its project's gate, a request
// slot. It returns what to give back once the request is done; no release (and no
// error) when t may not send after all, being fenced meanwhile, and expired when t's
// notAfter passed first.
func (e *executor) admit(t *task, gate *gate) (release func(), expired *outcome, err error) {
	if err := e.awaitLease(t); err != nil {
		return nil, nil, err
	}
	pause := e.tracePause(t, gate)
	releaseTurn, err := gate.acquire(t.waitCtx, e.probeEvery)
	pause.End()
	if err != nil {
		return nil, nil, errWaitEnded
	}
	if !e.mayStart() { // fenced or cut off while waiting for a pause to end
		releaseTurn()
		return nil, nil, nil
	}
	if o, isExpired := e.expired(t); isExpired { // before its first request, or while paused
		releaseTurn()
		return nil, &o, nil
	}
	releaseSlot, ok := e.takeSlot(t)
	if !ok {
		releaseTurn()
		return nil, nil, errWaitEnded
	}
	if !e.mayStart() {
		// Fenced while waiting for a slot (the process was frozen, say, and the
		// requests it waited for ended as it thawed): no request goes out now.
		releaseSlot()
		releaseTurn()
		return nil, nil, nil
	}
	return func() { releaseSlot(); releaseTurn() }, nil, nil
}

// request sends one request and counts it.
func (e *executor) request(ctx context.Context, t *task, req messages.APIRequest, retryOf string) answer {
	if t.attempts.Requests > 0 {
		e.observer.Retry(metricType(t.cmd.Type))
	}
	var resp *apiops.Response
	a := e.send(ctx, t, req, retryOf, func(ctx context.Context) (status int, err error) {
		if resp, err = e.api.Do(ctx, req); resp != nil {
			status = resp.StatusCode
		}
		return status, err
	})
	a.resp = resp
	return a
}

// send makes one call to APIOps for t, under the send guard, and counts it: its span,
// t's requests and the request metric. call returns the answer's status, 0 when it
// has none but an error's. sent is false when nothing went out (the instance was
// fenced while the client waited for a token or a connection).
func (e *executor) send(ctx context.Context, t *task, req messages.APIRequest, retryOf string, call func(context.Context) (status int, err error)) answer {
	started := e.clock.Now()
	actx, span := e.traceAttempt(ctx, t, req, retryOf)
	status, err := call(apiops.WithSendGuard(actx, e.sendGuard))
	if errors.Is(err, apiops.ErrNotSent) {
		endAttempt(span, 0, "not_sent")
		return answer{}
	}
	a := answer{sent: true, err: err}
	errors.As(err, &a.apiErr)
	if status == 0 && a.apiErr != nil {
		status = a.apiErr.StatusCode
	}
	a.failure = failureCode(err, a.apiErr)
	endAttempt(span, status, a.failure)
	if a.failure != tokenUnreadable {
		t.attempts.Requests++ // else nothing was sent
		e.observer.APIOpsRequest(metricType(t.cmd.Type), status, e.clock.Now().Sub(started))
	}
	return a
}

// judge tells the gate what APIOps's answer says about APIOps, and decides what comes
// of it for the command; a charged failure's outcome is what the command comes to if
// it has no attempts left.
func (e *executor) judge(ctx context.Context, t *task, gate *gate, a answer, scrub *messages.Scrubber) (outcome, verdict) {
	switch {
	case a.err == nil:
		gate.answered()
		return successOutcome(a.resp, t.cmd.DeployTargets(), scrub), settled
	case ctx.Err() != nil:
		e.saveAttempts(t)
		return outcome{}, handBack
	case apiops.KindOf(a.err) == apiops.Permanent:
		gate.answered()
		return failedOutcome(a.apiErr, a.err, scrub), settled
	case apiops.KindOf(a.err) == apiops.Unauthorized: // the client refreshed the token once already
		gate.unauthorized(a.err)
		e.saveAttempts(t)
		return outcome{}, againNow
	case gate.transientFailure(a.err):
		e.saveAttempts(t) // not charged: APIOps is down for the project
		return outcome{}, againNow
	}
	t.attempts.Charged++
	e.saveAttempts(t)
	return failedOutcome(a.apiErr, a.err, scrub), againLater
}

// retryAfter is the wait APIOps asked for, if it answered.
func retryAfter(apiErr *apiops.Error) time.Duration {
	if apiErr == nil {
		return 0
	}
	return apiErr.RetryAfter
}

// sleep waits delay before the next request, or until t's waitCtx ends.
func (e *executor) sleep(t *task, delay time.Duration) error {
	sleeping := e.traceChild(t, "backoff", attribute.Int64("apiops.retry.delay_ms", delay.Milliseconds()))
	defer sleeping.End()
	select {
	case <-e.clock.After(delay):
		return nil
	case <-t.waitCtx.Done():
		return errWaitEnded
	}
}

// awaitLease returns once this instance may start an APIOps request for t (see
// mayStart). A fenced or disconnected instance waits for a renewal or a reconnect,
// until t's waitCtx ends.
func (e *executor) awaitLease(t *task) error {
	for !e.mayStart() {
		select {
		case <-e.lease.awaitChange():
		case <-t.waitCtx.Done():
			return errWaitEnded
		case <-e.clock.After(e.lease.interval()):
		}
	}
	return nil
}

// takeSlot waits for one of the Concurrency request slots, given to the projects in
// turn (see slots); ok is false when t must stop first.
func (e *executor) takeSlot(t *task) (release func(), ok bool) {
	waiting := e.traceChild(t, "wait for a request slot")
	defer waiting.End()
	if !e.slots.acquire(t.waitCtx, t.cmd.Project) {
		return nil, false
	}
	return e.slots.release, true
}

// expired reports whether the command's notAfter passed before its first request.
func (e *executor) expired(t *task) (outcome, bool) {
	na := t.cmd.NotAfter
	if na == nil || t.attempts.Requests > 0 || !e.clock.Now().After(*na) {
		return outcome{}, false
	}
	return outcome{status: messages.StatusExpired, err: &messages.Error{
		Code: messages.CodeExpired, Field: "notAfter", Message: "notAfter " + na.Format(time.RFC3339) + " passed before the command could run",
	}}, true
}

// saveAttempts keeps the attempt counts across redeliveries; losing them costs at
// most a few extra retries, so a failure is only logged.
func (e *executor) saveAttempts(t *task) {
	ctx, cancel := context.WithTimeout(context.Background(), finishTimeout)
	defer cancel()
	if err := e.records.saveAttempts(ctx, t.commandKey(), t.attempts); err != nil {
		e.log.Warn("cannot store attempts", zap.String("id", t.cmd.ID), zap.Error(err))
	}
}

// failureCode names a request's failure for its span and the next attempt's ("" when
// it succeeded), without quoting APIOps's text.
func failureCode(err error, apiErr *apiops.Error) string {
	switch {
	case err == nil:
		return ""
	case apiErr == nil:
		return "network_error"
	case apiErr.Kind == apiops.Unauthorized && apiErr.StatusCode == 0:
		return tokenUnreadable
	}
	return messages.PublicCode(apiErr.ResultCode())
}

// tokenUnreadable: the token could not be read, so no request was sent.
const tokenUnreadable = "token_unreadable"

// mayStart reports whether an APIOps request may start now: this instance holds the
// lease, renewed it in time, and is connected to NATS. Disconnected, it could not store
// the outcome, and another instance may soon run the command again.
func (e *executor) mayStart() bool { return e.nc.IsConnected() && e.lease.canStart() }

// errFenced is why a request that waited was not sent after all.
var errFenced = errors.New("this instance may no longer start requests (its lease lapsed, or NATS is unreachable)")

// sendGuard is the APIOps client's last check before a request goes out (see
// apiops.WithSendGuard).
func (e *executor) sendGuard() error {
	if !e.mayStart() {
		return errFenced
	}
	return nil
}
