package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/messages"
)

var (
	// errHandBack means the command goes back to the stream unfinished (shutdown).
	errHandBack = errors.New("handed back")
	// errDropped means the command is left unacknowledged: this instance lost the
	// lease, and the active instance gets the command.
	errDropped = errors.New("dropped")
)

// finishTimeout bounds one attempt to read or store the worker's own records.
const finishTimeout = 10 * time.Second

// maxRetryAfter bounds how long a Retry-After may hold a command.
const maxRetryAfter = 15 * time.Minute

// process takes one command from delivery to acknowledgement.
func (w *Worker) process(ctx context.Context, t *task) {
	defer w.release(t)
	t.traceStarted()
	if err := w.mayGoOn(t); err != nil {
		w.stopped(t, err)
		return
	}
	if t.cmd.ID != "" {
		// Two messages with one id (published twice, an invalid copy) never run at
		// once, whatever their resources: the second finds the first's outcome.
		defer w.lockID(t.commandKey().String())()
		if err := w.mayGoOn(t); err != nil {
			w.stopped(t, err)
			return
		}
	}
	w.observer.CommandStarted()
	defer w.observer.CommandDone()
	if err := w.checkHeldKeystores(t); err != nil { // its verdict, before the id's outcome is looked up
		w.stopped(t, err)
		return
	}
	res, err := w.outcome(ctx, t)
	if err != nil {
		w.stopped(t, err)
		return
	}
	t.traceEnd(res, nil)
	if res != nil {
		w.logOutcome(t, res)
	}
}

// mayGoOn returns nil while t may be worked on, else why not: its lease term ended
// (errDropped) or shutdown started (errHandBack).
func (w *Worker) mayGoOn(t *task) error {
	switch {
	case t.term.ended():
		return errDropped
	case w.stopping.Load():
		return errHandBack
	}
	return nil
}

// stopErr is why t's waitCtx ended.
func (w *Worker) stopErr(t *task) error {
	if t.term.ended() {
		return errDropped
	}
	return errHandBack
}

// stopped deals with a command that did not finish: a dropped one goes back to the
// stream at once, for the active instance; one handed back goes back at shutdown, in
// order.
func (w *Worker) stopped(t *task, err error) {
	t.traceEnd(nil, err)
	switch {
	case errors.Is(err, errHandBack):
		w.handBackLater(t)
	case errors.Is(err, errDropped):
		w.nakDropped(t)
	}
}

// nakDropped hands back a command this instance may no longer run, so that the active
// instance gets it without waiting for AckWait; its barrier parks whatever comes after
// it meanwhile. Cut off from NATS, the Nak is lost and AckWait brings the command back.
func (w *Worker) nakDropped(t *task) {
	if err := t.msg.Nak(); err != nil && w.nc.IsConnected() {
		w.log.Warn("handing a dropped command back", zap.String("id", t.cmd.ID), zap.Error(err))
	}
}

// outcome decides the command's result and makes it final (see finish); res is nil
// when the id had finished before with the same type.
func (w *Worker) outcome(ctx context.Context, t *task) (*messages.Result, error) {
	var done *finished
	if t.cmd.ID != "" { // also for an invalid command: its id may have finished before
		err := w.persistently(t.waitCtx, t, "look up the command id", func(ctx context.Context) (err error) {
			done, err = w.store.finished(ctx, t.commandKey())
			if err == nil && done == nil && t.decodeErr == nil && t.delivered > 1 {
				t.attempts, err = w.store.attempts(ctx, t.commandKey())
			}
			return err
		})
		if err != nil {
			return nil, w.stopErr(t)
		}
	}
	if done != nil {
		var rejected *messages.Result
		writes := w.traceChild(t, "terminal writes")
		err := w.persistently(ctx, t, "send the stored result again", func(ctx context.Context) (err error) {
			rejected, err = w.finishAgain(ctx, t, done)
			return err
		})
		writes.End()
		if rejected == nil && err == nil && t.planOf != nil {
			return storedResult(done) // the plan goes on from it
		}
		return rejected, err
	}
	var res *messages.Result
	plan, isPlan := t.cmd.Plan()
	switch {
	case t.decodeErr != nil:
		res = messages.Rejection(t.cmd, t.decodeErr, t.received)
	case isPlan:
		var err error
		if res, err = w.runPlan(ctx, t, plan); err != nil { // see plan.go
			return nil, err
		}
	default:
		if t.waitCtx.Err() != nil { // not started, so not to start
			return nil, w.stopErr(t)
		}
		o, err := w.execute(ctx, t) // expired, or executed
		if err != nil {
			return nil, err
		}
		res = w.result(t, o)
	}
	// Once APIOps has answered, storing keeps trying until the shutdown deadline: a
	// command handed back now would be executed again.
	writes := w.traceChild(t, "terminal writes")
	defer writes.End()
	store := func(res *messages.Result) error {
		return w.persistently(ctx, t, "store the outcome", func(ctx context.Context) error { return w.finish(ctx, t, res) })
	}
	err := store(res)
	if errors.Is(err, errTooLarge) { // see oversize.go
		w.log.Warn("the outcome is too large to store: storing it shortened", zap.String("id", t.cmd.ID), zap.Uint64("seq", t.seq), zap.Error(err))
		res = shortened(res)
		err = store(res)
	}
	if errors.Is(err, errTooLarge) {
		w.log.Error("even the shortened outcome cannot be stored: the command is acknowledged without a result", zap.String("id", t.cmd.ID),
			zap.Uint64("seq", t.seq), zap.Error(err))
		if t.planOf == nil {
			w.sendAck(t) // fenced too: with nothing stored, whoever got it next would run it again
		}
		return res, nil
	}
	return res, err
}

// takeSlot waits for one of the Concurrency request slots, given to the projects in
// turn (see slots); false when t must stop first.
func (w *Worker) takeSlot(t *task) bool {
	waiting := w.traceChild(t, "wait for a request slot")
	defer waiting.End()
	return w.slots.acquire(t.waitCtx, t.cmd.Project)
}

// persistently runs fn, which reads or stores the worker's own records in NATS, until
// it succeeds, with backoff. The command stays held meanwhile, so the commands for its
// resource wait behind it and nothing runs twice or out of order. Only the end of
// until ends the retries (errHandBack).
func (w *Worker) persistently(until context.Context, t *task, what string, fn func(context.Context) error) error {
	var wait backoff.BackOff // made at the first failure: most calls succeed at once
	for {
		ctx, cancel := context.WithTimeout(context.Background(), finishTimeout)
		err := fn(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if tooLarge(err) { // no retry will make it fit
			return fmt.Errorf("%w: %w", errTooLarge, err)
		}
		w.log.Error("cannot "+what+"; retrying, the command waits", zap.String("id", t.cmd.ID), zap.Uint64("seq", t.seq), zap.Error(err))
		if wait == nil {
			wait = w.newBackoff(0)
		}
		select {
		case <-w.cfg.Clock.After(wait.NextBackOff()):
		case <-until.Done():
			return errHandBack
		}
	}
}

// expired reports whether the command's notAfter passed before its first request.
func (w *Worker) expired(t *task) (outcome, bool) {
	na := t.cmd.NotAfter
	if na == nil || t.attempts.Requests > 0 || !w.cfg.Clock.Now().After(*na) {
		return outcome{}, false
	}
	return outcome{status: messages.StatusExpired, err: &messages.Error{
		Code: messages.CodeExpired, Field: "notAfter", Message: "notAfter " + na.Format(time.RFC3339) + " passed before the command could run",
	}}, true
}

// outcome is what executing a command came to.
type outcome struct {
	status     messages.Status
	err        *messages.Error
	httpStatus int
	deployment *messages.DeploymentResult
}

func (w *Worker) result(t *task, o outcome) *messages.Result {
	return &messages.Result{
		ID: t.cmd.ID, Type: t.cmd.Type, Project: t.cmd.Project, CorrelationID: t.cmd.CorrelationID,
		Status: o.status, Attempts: t.attempts.Requests,
		ReceivedAt: t.received, FinishedAt: w.cfg.Clock.Now().UTC(),
		HTTPStatus: o.httpStatus, DeploymentResult: o.deployment, Error: o.err,
		Warnings: t.cmd.Warnings(),
	}
}

// execute calls APIOps under the retry policy: permanent answers end the command,
// transient failures are retried with exponential backoff and jitter (at least
// Retry-After) until MaxAttempts of them, and while the command's project is paused the
// command waits without using its budget. Each request takes a request slot for its own
// duration only: a command waiting for a retry, Retry-After or a pause takes none. No
// request starts unless this instance may start one (see mayStart). It returns
// errHandBack when ctx ends first, errDropped when the lease is lost.
func (w *Worker) execute(ctx context.Context, t *task) (outcome, error) {
	req := t.cmd.APIRequest()
	// The body may hold opened secrets: no copy of ours outlives the command.
	defer clear(req.Body)
	scrub := t.cmd.Scrubber()
	gate := w.gates.of(t.cmd.Project)
	var wait backoff.BackOff // made at the first charged failure
	retryOf := ""            // why the next request is sent again
	if t.attempts.Requests > 0 {
		retryOf = "redelivered"
	}
	for {
		if err := w.awaitLease(t); err != nil {
			return outcome{}, err
		}
		pause := w.tracePause(t, gate)
		probing, err := w.awaitTurn(t.waitCtx, gate)
		pause.End()
		if err != nil {
			return outcome{}, w.stopErr(t)
		}
		if !w.mayStart() { // fenced or cut off while waiting for a pause to end
			if probing {
				<-gate.probe
			}
			continue
		}
		if o, expired := w.expired(t); expired { // before its first request, or while paused
			if probing {
				<-gate.probe
			}
			return o, nil
		}
		if !w.takeSlot(t) {
			if probing {
				<-gate.probe
			}
			return outcome{}, w.stopErr(t)
		}
		if !w.mayStart() {
			// Fenced while waiting for a slot (the process was frozen, say, and the
			// requests it waited for ended as it thawed): no request goes out now.
			w.slots.release()
			if probing {
				<-gate.probe
			}
			continue
		}
		if t.attempts.Requests > 0 {
			w.observer.Retry(metricType(t.cmd.Type))
		}
		started := w.cfg.Clock.Now()
		actx, attempt := w.traceAttempt(ctx, t, req, retryOf)
		resp, err := w.api.Do(apiops.WithSendGuard(actx, w.sendGuard), req)
		w.slots.release()
		if probing {
			<-gate.probe
		}
		if errors.Is(err, apiops.ErrNotSent) { // fenced while waiting for a token or a connection
			endAttempt(attempt, 0, "not_sent")
			continue
		}
		var apiErr *apiops.Error
		errors.As(err, &apiErr)
		status := 0
		switch {
		case resp != nil:
			status = resp.StatusCode
		case apiErr != nil:
			status = apiErr.StatusCode
		}
		retryOf = failureCode(err, apiErr)
		endAttempt(attempt, status, retryOf)
		if retryOf != tokenUnreadable {
			t.attempts.Requests++ // else nothing was sent
			w.observer.APIOpsRequest(metricType(t.cmd.Type), status, w.cfg.Clock.Now().Sub(started))
		}
		switch {
		case err == nil:
			gate.answered()
			return successOutcome(resp, t.cmd.DeployTargets(), scrub), nil
		case ctx.Err() != nil:
			w.saveAttempts(t)
			return outcome{}, errHandBack
		case apiops.KindOf(err) == apiops.Permanent:
			gate.answered()
			return failedOutcome(apiErr, err, scrub), nil
		case apiops.KindOf(err) == apiops.Unauthorized: // the client refreshed the token once already
			gate.unauthorized(err)
			w.saveAttempts(t)
			continue
		}
		if gate.transientFailure(err) {
			w.saveAttempts(t) // not charged: APIOps is down for the project
			continue
		}
		t.attempts.Charged++
		w.saveAttempts(t)
		if t.attempts.Charged >= w.cfg.MaxAttempts {
			o := failedOutcome(apiErr, err, scrub)
			o.err = &messages.Error{Code: messages.CodeRetriesExhausted, Message: fmt.Sprintf("%d attempts failed; last: %s", t.attempts.Charged, o.err.Message)}
			return o, nil
		}
		if wait == nil {
			wait = w.newBackoff(t.attempts.Charged - 1)
		}
		delay := wait.NextBackOff()
		if apiErr != nil && apiErr.RetryAfter > delay {
			delay = min(apiErr.RetryAfter, maxRetryAfter)
		}
		sleeping := w.traceChild(t, "backoff", attribute.Int64("apiops.retry.delay_ms", delay.Milliseconds()))
		select {
		case <-w.cfg.Clock.After(delay):
			sleeping.End()
		case <-t.waitCtx.Done():
			sleeping.End()
			return outcome{}, w.stopErr(t)
		}
	}
}

// awaitLease returns once this instance may start an APIOps request for t (see
// mayStart). A fenced or disconnected instance waits for a renewal or a reconnect; a
// term that ended drops t.
func (w *Worker) awaitLease(t *task) error {
	for !w.mayStart() {
		select {
		case <-w.lease.awaitChange():
		case <-t.waitCtx.Done():
			return w.stopErr(t)
		case <-w.cfg.Clock.After(w.lease.interval()):
		}
	}
	return nil
}

// awaitTurn returns at once while the project runs. While it is paused it waits for the
// pause to end, or for its turn to probe: one waiting command of the project at a time
// retries, every RetryMax; probing is then true and the caller returns the probe token.
func (w *Worker) awaitTurn(ctx context.Context, gate *gate) (probing bool, err error) {
	for {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		reason, resumed, _ := gate.state()
		if reason == Running {
			return false, nil
		}
		select {
		case <-resumed:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		case gate.probe <- struct{}{}:
		}
		select {
		case <-w.cfg.Clock.After(w.cfg.RetryMax):
			return true, nil
		case <-resumed:
			<-gate.probe
			return false, nil
		case <-ctx.Done():
			<-gate.probe
			return false, ctx.Err()
		}
	}
}

func (w *Worker) newBackoff(charged int) backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = w.cfg.RetryInitial
	b.MaxInterval = w.cfg.RetryMax
	b.MaxElapsedTime = 0
	b.Reset()
	for range charged { // a redelivered command continues where it was
		b.NextBackOff()
	}
	return b
}

// saveAttempts keeps the attempt counts across redeliveries; losing them costs at
// most a few extra retries, so a failure is only logged.
func (w *Worker) saveAttempts(t *task) {
	ctx, cancel := context.WithTimeout(context.Background(), finishTimeout)
	defer cancel()
	if err := w.store.saveAttempts(ctx, t.commandKey(), t.attempts); err != nil {
		w.log.Warn("cannot store attempts", zap.String("id", t.cmd.ID), zap.Error(err))
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

func (w *Worker) logOutcome(t *task, res *messages.Result) {
	fields := []zap.Field{
		zap.String("id", res.ID), zap.String("type", res.Type), zap.String("project", res.Project),
		zap.String("status", string(res.Status)), zap.Int("attempts", res.Attempts),
		zap.Duration("duration", res.FinishedAt.Sub(t.received)), zap.Int("http_status", res.HTTPStatus),
	}
	if id := t.traceID(); id != "" {
		fields = append(fields, zap.String("trace_id", id))
	}
	if res.CorrelationID != "" {
		fields = append(fields, zap.String("correlation_id", res.CorrelationID))
	}
	if res.Error != nil {
		fields = append(fields, zap.String("error_code", res.Error.Code), zap.String("error", res.Error.Message))
		if res.Error.Field != "" {
			fields = append(fields, zap.String("field", res.Error.Field))
		}
	}
	if res.Status == messages.StatusSucceeded {
		w.log.Info("command finished", fields...)
	} else {
		w.log.Warn("command finished", fields...)
	}
}

// idLock serialises the commands of one id within the process.
type idLock struct {
	sync.Mutex
	users int
}

// lockID waits until no other command with id runs, and returns the unlock.
func (w *Worker) lockID(id string) (unlock func()) {
	w.mu.Lock()
	l := w.idLocks[id]
	if l == nil {
		l = &idLock{}
		w.idLocks[id] = l
	}
	l.users++
	w.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		w.mu.Lock()
		if l.users--; l.users == 0 {
			delete(w.idLocks, id)
		}
		w.mu.Unlock()
	}
}

// mayStart reports whether an APIOps request may start now: this instance holds the
// lease, renewed it in time, and is connected to NATS. Disconnected, it could not store
// the outcome, and another instance may soon run the command again.
func (w *Worker) mayStart() bool { return w.nc.IsConnected() && w.lease.canStart() }

// errFenced is why a request that waited was not sent after all.
var errFenced = errors.New("this instance may no longer start requests (its lease lapsed, or NATS is unreachable)")

// sendGuard is the APIOps client's last check before a request goes out (see
// apiops.WithSendGuard).
func (w *Worker) sendGuard() error {
	if !w.mayStart() {
		return errFenced
	}
	return nil
}
