package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/apiops-worker/apiops-worker/messages"
)

// SubmitPlan publishes plan, a command whose Params is a *messages.Plan (Type may be
// left empty), and waits until ctx ends for the plan's result, which holds the result
// of every step (see docs/contract.md). The plan is validated, every step included,
// before anything is published; with a seal key every step's secrets are sealed.
//
// Each step the worker runs publishes a result of its own, with id
// <plan id>:step-<n> or <plan id>:undo-<n> (messages.StepID), on the result subject of its
// type. SubmitPlan subscribes to <prefix>.result.<project>.> before it publishes, and
// calls onStep (may be nil) with each of these as it arrives, one call at a time, on
// the goroutine that called SubmitPlan, at most once per step. A step result that
// did not arrive live (the plan was published before and JetStream reported a
// duplicate, so the worker answered from its stored result) is passed to onStep from
// the plan's result before SubmitPlan returns; skipped steps never are.
//
// The plan is published with Nats-Msg-Id <project>/<id>, and once more without it when
// JetStream reports a duplicate, as Request does: the worker does not run a plan id
// twice, it answers from the result it stored.
func (c *Client) SubmitPlan(ctx context.Context, plan *messages.Command, onStep func(step *messages.Result)) (*messages.Result, error) {
	if plan == nil {
		return nil, errors.New("submit plan: nil command")
	}
	p, ok := plan.Plan()
	if !ok {
		return nil, fmt.Errorf("submit plan %s: params are %T, not a *messages.Plan", label(plan), plan.Params)
	}
	if plan.Type != "" && plan.Type != messages.PlanType {
		return nil, fmt.Errorf("submit plan %s: type is %q, not %q", label(plan), plan.Type, messages.PlanType)
	}
	replyTo := replyInbox(plan, nuid.Next())
	msg, err := c.message(ctx, plan, replyTo)
	if err != nil {
		return nil, err
	}

	stepSub, err := c.subscribeResults(ctx, plan.Project)
	if err != nil {
		return nil, fmt.Errorf("submit plan %s: %w", label(plan), err)
	}
	defer func() { _ = stepSub.Unsubscribe() }()
	replySubs, err := c.subscribeInboxes(ctx, []inbox{{subject: replyTo, project: plan.Project}})
	if err != nil {
		return nil, fmt.Errorf("submit plan %s: %w", label(plan), err)
	}
	replySub := replySubs[0]
	defer func() { _ = replySub.Unsubscribe() }()

	pumpCtx, stop := context.WithCancel(ctx)
	defer stop()
	steps := make(chan *messages.Result)
	go func() {
		for {
			m, err := stepSub.NextMsgWithContext(pumpCtx)
			if err != nil {
				return
			}
			if r, ok := stepResultOf(plan, p, m); ok {
				select {
				case steps <- r:
				case <-pumpCtx.Done():
					return
				}
			}
		}
	}()

	if err := c.publishAgainIfDuplicate(ctx, plan, msg); err != nil {
		return nil, err
	}

	seen := make(map[string]bool)
	deliver := func(r *messages.Result) {
		if seen[r.ID] || r.Status == messages.StatusSkipped {
			return
		}
		seen[r.ID] = true
		if onStep != nil {
			onStep(r)
		}
	}
	replies := make(chan *messages.Result, 1)
	replyErr := make(chan error, 1)
	go func() {
		for {
			m, err := replySub.NextMsgWithContext(pumpCtx)
			if err != nil {
				replyErr <- err
				return
			}
			if r, ok := resultOf(plan, m); ok {
				replies <- r
				return
			}
		}
	}()
	for {
		select {
		case r := <-steps:
			deliver(r)
		case err := <-replyErr:
			return nil, fmt.Errorf("submit plan %s: no result (%d of %d steps reported): %w", label(plan), len(seen), len(p.Steps), err)
		case res := <-replies:
			// Step results published just before the plan's may still be on their way.
			for draining := true; draining; {
				select {
				case r := <-steps:
					deliver(r)
				default:
					draining = false
				}
			}
			for i := range res.Steps {
				deliver(&res.Steps[i])
			}
			for i := range res.OnFailure {
				deliver(&res.OnFailure[i])
			}
			return res, nil
		}
	}
}

// stepResultOf decodes m as the result of one of plan's steps: its project, an id
// <plan id>:step-<n> or <plan id>:undo-<n> of a step it has, and that step's type.
func stepResultOf(plan *messages.Command, p *messages.Plan, m *nats.Msg) (*messages.Result, bool) {
	if id := m.Header.Get(messages.HeaderCommandID); id != "" && !strings.HasPrefix(id, plan.ID+":") {
		return nil, false // another command's: not worth decoding
	}
	var r messages.Result
	if json.Unmarshal(m.Data, &r) != nil || r.Project != plan.Project {
		return nil, false
	}
	undo, n, ok := messages.ParseStepID(plan.ID, r.ID)
	steps := p.Steps
	if undo {
		steps = p.OnFailure
	}
	if !ok || n > len(steps) || r.Type != typeOf(steps[n-1]) {
		return nil, false
	}
	return &r, true
}

// subscribeResults subscribes to every result of project, and waits for the server to
// take the subscription, so that a refusal is an error now.
func (c *Client) subscribeResults(ctx context.Context, project string) (*nats.Subscription, error) {
	subject := c.subjects.Result(project, ">")
	sub, err := c.nc.SubscribeSync(subject)
	if err == nil {
		// The results of other commands of the project pass here too; never drop one of
		// ours as a slow consumer.
		err = sub.SetPendingLimits(-1, -1)
	}
	if err == nil {
		flushCtx, cancel := context.WithTimeout(ctx, flushTimeout)
		err = c.nc.FlushWithContext(flushCtx)
		cancel()
	}
	if err == nil {
		if last := c.nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), `"`+subject+`"`) {
			err = fmt.Errorf("%w: this user may not subscribe to the results of project %q", last, project)
		}
	}
	if err != nil {
		if sub != nil {
			_ = sub.Unsubscribe()
		}
		return nil, fmt.Errorf("subscribe to the step results %s: %w", subject, err)
	}
	return sub, nil
}
