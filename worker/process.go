package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"

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

// process takes one command from delivery to acknowledgement: doc.go maps the way.
func (w *Worker) process(ctx context.Context, t *task) {
	defer w.sched.release(t)
	t.traceStarted()
	if err := t.mayGoOn(w.stopping.Load()); err != nil {
		w.stopped(t, err)
		return
	}
	if t.cmd.ID != "" {
		// Two messages with one id (published twice, an invalid copy) never run at
		// once, whatever their resources: the second finds the first's outcome.
		defer w.ids.lock(t.commandKey().String())()
		if err := t.mayGoOn(w.stopping.Load()); err != nil {
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
	res, err := w.decide(ctx, t)
	if err != nil {
		w.stopped(t, err)
		return
	}
	t.traceEnd(res, nil)
	if res != nil {
		w.logOutcome(t, res)
	}
}

// stopped deals with a command that did not finish: a dropped one goes back to the
// stream at once, for the active instance; one handed back goes back at shutdown, in
// order.
func (w *Worker) stopped(t *task, err error) {
	t.traceEnd(nil, err)
	switch {
	case errors.Is(err, errHandBack):
		w.sched.handBackLater(t)
	case errors.Is(err, errDropped):
		w.sched.nakDropped(t)
	}
}

// decide comes to the command's result and makes it final (see finish): the stored
// one if its id finished before, else its rejection, its plan's or its request's. res
// is nil when the id had finished before with the same type.
func (w *Worker) decide(ctx context.Context, t *task) (*messages.Result, error) {
	done, err := w.lookUp(t)
	if err != nil {
		return nil, err
	}
	if done != nil {
		return w.finishedBefore(ctx, t, done)
	}
	res, err := w.run(ctx, t)
	if err != nil {
		return nil, err
	}
	return w.storeOutcome(ctx, t, res)
}

// lookUp reads the id's record, and for a redelivered command its attempts so far.
func (w *Worker) lookUp(t *task) (done *finished, err error) {
	if t.cmd.ID == "" { // an invalid command with an id is looked up too: it may have finished before
		return nil, nil
	}
	err = w.persistently(t.waitCtx, t, "look up the command id", func(ctx context.Context) (err error) {
		done, err = w.store.finished(ctx, t.commandKey())
		if err == nil && done == nil && t.invalid == nil && t.delivered > 1 {
			t.attempts, err = w.store.attempts(ctx, t.commandKey())
		}
		return err
	})
	if err != nil {
		return nil, stopErr(t)
	}
	return done, nil
}

// finishedBefore finishes a command whose id has a record (finishAgain): res is the
// rejection of a reused id, or, for a plan's step, the stored result the plan goes on
// from.
func (w *Worker) finishedBefore(ctx context.Context, t *task, done *finished) (res *messages.Result, err error) {
	writes := w.traceChild(t, "terminal writes")
	err = w.persistently(ctx, t, "send the stored result again", func(ctx context.Context) (err error) {
		res, err = w.finishAgain(ctx, t, done)
		return err
	})
	writes.End()
	if res == nil && err == nil && t.planOf != nil {
		return storedResult(done)
	}
	return res, err
}

// run comes to the outcome of a command whose id has none yet.
func (w *Worker) run(ctx context.Context, t *task) (*messages.Result, error) {
	if t.rejection != nil {
		return t.rejection, nil
	}
	if plan, isPlan := t.cmd.Plan(); isPlan {
		return w.runPlan(ctx, t, plan, w.decide) // see plan.go
	}
	if t.waitCtx.Err() != nil { // not started, so not to start
		return nil, stopErr(t)
	}
	run := w.exec.execute // expired, or executed
	if t.cmd.CommandType().Verifies {
		run = w.exec.verify // verify.go
	}
	o, err := run(ctx, t)
	if err != nil {
		return nil, err
	}
	return w.result(t, o), nil
}

// storeOutcome makes res final (finish). Once APIOps has answered, storing keeps
// trying until the shutdown deadline: a command handed back now would be executed
// again. An outcome too large to store is stored shortened (oversize.go).
func (w *Worker) storeOutcome(ctx context.Context, t *task, res *messages.Result) (*messages.Result, error) {
	writes := w.traceChild(t, "terminal writes")
	defer writes.End()
	store := func(res *messages.Result) error {
		return w.persistently(ctx, t, "store the outcome", func(ctx context.Context) error { return w.finish(ctx, t, res) })
	}
	err := store(res)
	if errors.Is(err, errTooLarge) {
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
			wait = w.policy.backoff(0)
		}
		select {
		case <-w.cfg.Clock.After(wait.NextBackOff()):
		case <-until.Done():
			return errHandBack
		}
	}
}

// result is the command's result once executing it came to o.
func (w *Worker) result(t *task, o outcome) *messages.Result {
	return &messages.Result{
		ID: t.cmd.ID, Type: t.cmd.Type, Project: t.cmd.Project, CorrelationID: t.cmd.CorrelationID,
		Status: o.status, Attempts: t.attempts.Requests,
		ReceivedAt: t.received, FinishedAt: w.cfg.Clock.Now().UTC(),
		HTTPStatus: o.httpStatus, DeploymentResult: o.deployment, Error: o.err,
		Warnings: t.cmd.Warnings(), Verification: o.verification,
	}
}

// storedResult is the result a record holds.
func storedResult(f *finished) (*messages.Result, error) {
	var res messages.Result
	if err := json.Unmarshal(f.Result, &res); err != nil {
		return nil, fmt.Errorf("decode a stored result: %w", err)
	}
	return &res, nil
}
