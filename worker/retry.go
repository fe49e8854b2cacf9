package worker

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// maxRetryAfter bounds how long a Retry-After may hold a command.
const maxRetryAfter = 15 * time.Minute

// retryPolicy says when a command's failed request is sent again: after an exponential
// backoff with jitter from RetryInitial up to RetryMax, at least the Retry-After APIOps
// asked for (at most maxRetryAfter), until MaxAttempts failures were charged to the
// command. Which failures are charged is the executor's business (execute.go): the
// policy only counts them.
type retryPolicy struct {
	initial, max time.Duration
	maxAttempts  int
}

func newRetryPolicy(cfg Config) retryPolicy {
	return retryPolicy{initial: cfg.RetryInitial, max: cfg.RetryMax, maxAttempts: cfg.MaxAttempts}
}

// backoff is the policy's backoff, already past skip waits: a redelivered command
// continues where it was.
func (p retryPolicy) backoff(skip int) backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = p.initial
	b.MaxInterval = p.max
	b.MaxElapsedTime = 0
	b.Reset()
	for range skip {
		b.NextBackOff()
	}
	return b
}

// retries is one command's way through the policy.
type retries struct {
	policy retryPolicy
	wait   backoff.BackOff // made at the first charged failure
}

func (p retryPolicy) forCommand() *retries { return &retries{policy: p} }

// next returns how long to wait before the next request, after charged failures in
// all (those of earlier deliveries included), APIOps having asked for retryAfter (0:
// not asked); final when the command has no attempts left.
func (r *retries) next(charged int, retryAfter time.Duration) (delay time.Duration, final bool) {
	if charged >= r.policy.maxAttempts {
		return 0, true
	}
	if r.wait == nil {
		r.wait = r.policy.backoff(charged - 1)
	}
	delay = r.wait.NextBackOff()
	if retryAfter > delay {
		delay = min(retryAfter, maxRetryAfter)
	}
	return delay, false
}
