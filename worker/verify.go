package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/messages"
)

// The verifier runs a proxy.verify: it reads deploy-status and route-health for each
// of the environments until each shows the proxy's latest revision live on every pod,
// or the deadline passes (docs/design/verified-rotation.md). Reads change nothing, so
// a verify that is redelivered (a crash, a failover) simply reads again, its deadline
// starting again.

// verifyBackoff is the wait between rounds of reads: it doubles from the first to
// the last.
var verifyBackoff = struct{ first, last time.Duration }{250 * time.Millisecond, 5 * time.Second}

// verify runs t, a proxy.verify, to its outcome; errors as execute's.
func (e *executor) verify(ctx context.Context, t *task) (outcome, error) {
	o, err := e.verifyRounds(ctx, t)
	if errors.Is(err, errWaitEnded) {
		return outcome{}, stopErr(t)
	}
	return o, err
}

func (e *executor) verifyRounds(ctx context.Context, t *task) (outcome, error) {
	p := t.cmd.Params.(*messages.ProxyVerify)
	deadline := e.clock.Now().Add(time.Duration(p.Timeout()) * time.Second)
	seen := make([]messages.EnvironmentVerification, len(p.EnvironmentNameList))
	for i, env := range p.EnvironmentNameList {
		seen[i] = messages.EnvironmentVerification{EnvironmentName: env, Problem: "not read yet"}
	}
	delay := verifyBackoff.first
	for {
		if o, expired := e.expired(t); expired {
			return o, nil
		}
		done, failure, err := e.verifyRound(ctx, t, p, seen)
		switch {
		case err != nil:
			return outcome{}, err
		case failure != nil:
			return outcome{status: messages.StatusFailed, err: failure, verification: seen}, nil
		case done:
			return outcome{status: messages.StatusSucceeded, verification: seen}, nil
		case !e.clock.Now().Before(deadline):
			return outcome{status: messages.StatusFailed, verification: seen, err: &messages.Error{Code: messages.CodeVerifyFailed,
				Message: fmt.Sprintf("not live after %ds: %s", p.Timeout(), unverified(seen))}}, nil
		}
		if err := e.sleep(t, min(delay, deadline.Sub(e.clock.Now()))); err != nil {
			return outcome{}, err
		}
		delay = min(2*delay, verifyBackoff.last)
	}
}

// unverified names each environment not verified and why.
func unverified(seen []messages.EnvironmentVerification) string {
	var parts []string
	for _, v := range seen {
		if !v.Verified {
			parts = append(parts, v.EnvironmentName+": "+v.Problem)
		}
	}
	return strings.Join(parts, "; ")
}

// verifyRound reads every environment not verified yet, once, under the same rules
// as a change's request: the lease, a request slot. failure is set when APIOps
// refused a read for good (an unknown proxy or environment, an answer the worker
// does not recognise): waiting longer would not change it.
func (e *executor) verifyRound(ctx context.Context, t *task, p *messages.ProxyVerify, seen []messages.EnvironmentVerification) (done bool, failure *messages.Error, err error) {
	if err := e.awaitLease(t); err != nil {
		return false, nil, err
	}
	release, ok := e.takeSlot(t)
	if !ok {
		return false, nil, errWaitEnded
	}
	defer release()
	done = true
	for i := range seen {
		if seen[i].Verified {
			continue
		}
		if !e.mayStart() {
			return false, nil, nil // fenced meanwhile: the next round waits for the lease
		}
		v, failure := e.readEnvironment(ctx, t, p, seen[i].EnvironmentName)
		v.Reads = seen[i].Reads + 1
		seen[i] = v
		if failure != nil {
			return false, failure, nil
		}
		done = done && v.Verified
	}
	return done, nil, nil
}

// readEnvironment reads one environment's deploy-status and route-health, and the
// keystores to read back, and judges them.
func (e *executor) readEnvironment(ctx context.Context, t *task, p *messages.ProxyVerify, env string) (messages.EnvironmentVerification, *messages.Error) {
	base := []string{"apiops", "projects", t.cmd.Project, "apiProxies", p.APIProxyName, "environments", env}
	v := messages.EnvironmentVerification{EnvironmentName: env}
	status, failure := e.read(ctx, t, env, append(slices.Clone(base), "deploy-status"))
	if status == nil {
		v.Problem = "deploy-status: " + failure.Message
		return v, permanent(failure)
	}
	health, failure := e.read(ctx, t, env, append(slices.Clone(base), "route-health"))
	if health == nil {
		v.Problem = "route-health: " + failure.Message
		return v, permanent(failure)
	}
	if problem := judgeLive(&v, status, health, p.Baseline); problem != "" {
		v.Problem = problem
		return v, nil
	}
	for _, ks := range []*string{p.KeyStoreName, p.TrustStoreName} {
		if ks == nil {
			continue
		}
		keystore, failure := e.read(ctx, t, "", []string{"apiops", "projects", t.cmd.Project, "keystores", *ks})
		if keystore == nil {
			v.Problem = "keystore " + *ks + ": " + failure.Message
			return v, permanent(failure)
		}
		if !holdsEnvironment(keystore, env) {
			v.Problem = fmt.Sprintf("keystore %s holds no file for %s", *ks, env)
			return v, nil
		}
	}
	v.Verified = true
	return v, nil
}

// permanent is failure when it ends the verify now, nil when a later read may do
// better (a network error, a 5xx, a 429).
func permanent(failure *messages.Error) *messages.Error {
	if failure == nil || failure.Code == transientRead {
		return nil
	}
	return failure
}

// transientRead marks a read that failed in a way a later read may not.
const transientRead = "transient"

// read sends one GET and returns the entry for env (the only entry when env is "" or
// the entries name no environment); on failure, why.
func (e *executor) read(ctx context.Context, t *task, env string, path []string) (map[string]json.RawMessage, *messages.Error) {
	req := messages.APIRequest{Method: http.MethodGet, Path: path}
	started := e.clock.Now()
	actx, span := e.traceAttempt(ctx, t, req, "")
	entries, err := e.api.Read(apiops.WithSendGuard(actx, e.sendGuard), req)
	var apiErr *apiops.Error
	errors.As(err, &apiErr)
	status := http.StatusOK
	if apiErr != nil {
		status = apiErr.StatusCode
	}
	endAttempt(span, status, failureCode(err, apiErr))
	t.attempts.Requests++
	e.observer.APIOpsRequest(metricType(t.cmd.Type), status, e.clock.Now().Sub(started))
	switch {
	case err != nil && apiops.KindOf(err) == apiops.Permanent:
		return nil, failedOutcome(apiErr, err, noSecrets).err
	case err != nil:
		return nil, &messages.Error{Code: transientRead, Message: failedOutcome(apiErr, err, noSecrets).err.Message}
	}
	for _, entry := range entries {
		named, _ := member[string](entry, "environmentName")
		if env == "" || named == env || named == "" && len(entries) == 1 {
			return entry, nil
		}
	}
	return nil, &messages.Error{Code: messages.CodeUnrecognisedResponse, Message: fmt.Sprintf("%s answered no entry for %s", req, env)}
}

// noSecrets scrubs nothing: a read sends no secret.
var noSecrets = messages.NewScrubber()

// judgeLive fills v from an environment's deploy-status and route-health entries and
// returns why the environment is not live, "" when it is; a baseline may run a
// revision behind the saved settings. A member that is missing or of another type is
// a problem too: an answer not understood is never taken for live.
func judgeLive(v *messages.EnvironmentVerification, status, health map[string]json.RawMessage, baseline bool) string {
	revision, hasRevision := member[int](status, "revision")
	redeploy, hasRedeploy := member[bool](status, "redeployRequired")
	deployed, hasDeployed := member[bool](status, "deployed")
	inconsistent, hasInconsistent := member[bool](health, "inconsistent")
	pods, hasPods := member[[]struct {
		PodName  string `json:"podName"`
		Active   bool   `json:"active"`
		Revision int    `json:"revision"`
	}](health, "pods")
	v.Revision, v.RedeployRequired, v.Inconsistent = revision, redeploy, inconsistent
	v.Deployed = deployed || !hasDeployed && revision > 0
	for _, pod := range pods {
		v.Pods = append(v.Pods, messages.PodVerification{PodName: pod.PodName, Active: pod.Active, Revision: pod.Revision})
	}
	allActive, known := podsActive(v, health)
	switch {
	case !hasRevision || !hasRedeploy || isPresent(status, "deployed") && !hasDeployed:
		return "deploy-status: no revision and redeployRequired in a form the worker reads"
	case !hasInconsistent || !known || isPresent(health, "pods") && !hasPods:
		return "route-health: no podsActive and inconsistent in a form the worker reads"
	case !v.Deployed:
		return "not deployed"
	case redeploy && !baseline:
		return fmt.Sprintf("revision %d is deployed, but a redeploy is required: the latest change is not", revision)
	case inconsistent:
		return "route-health says the route is inconsistent"
	case !allActive:
		return fmt.Sprintf("%d of %d pods active", v.PodsActive, max(v.PodCount, len(pods)))
	}
	for _, pod := range pods {
		if pod.Revision != 0 && pod.Revision != revision {
			return fmt.Sprintf("pod %s runs revision %d, not %d", pod.PodName, pod.Revision, revision)
		}
	}
	return ""
}

// podsActive reads route-health's podsActive, which pages show as a count (with
// podCount) or as a flag, and whether every pod is active.
func podsActive(v *messages.EnvironmentVerification, health map[string]json.RawMessage) (all, known bool) {
	v.PodCount, _ = member[int](health, "podCount")
	inactive := 0
	for _, pod := range v.Pods {
		if !pod.Active {
			inactive++
		}
	}
	if flag, ok := member[bool](health, "podsActive"); ok {
		v.PodsActive = len(v.Pods) - inactive
		return flag && inactive == 0, true
	}
	count, ok := member[int](health, "podsActive")
	if !ok {
		return false, false
	}
	v.PodsActive = count
	total := max(v.PodCount, len(v.Pods))
	return count > 0 && (total == 0 || count >= total) && inactive == 0, true
}

// holdsEnvironment reports whether a keystore entry lists a file for env. Where the
// entries name their environment by id alone (list-keystores.mdx) and APIOps maps no
// id to a name, a keystore with any file passes: the read confirms that it exists.
func holdsEnvironment(keystore map[string]json.RawMessage, env string) bool {
	list, _ := member[[]namedEnvironment](keystore, "keyStoreEnvironmentList")
	byID := len(list) > 0 && !slices.ContainsFunc(list, func(e namedEnvironment) bool { return e.EnvironmentName != "" })
	return byID || slices.Contains(list, namedEnvironment{env})
}

// namedEnvironment is the member of an entry that names its environment.
type namedEnvironment struct {
	EnvironmentName string `json:"environmentName"`
}

// member decodes obj's member name as a T; ok is false when it is absent, null or
// not a T.
func member[T any](obj map[string]json.RawMessage, name string) (value T, ok bool) {
	raw, present := obj[name]
	if !present || string(raw) == "null" {
		return value, false
	}
	return value, json.Unmarshal(raw, &value) == nil
}

func isPresent(obj map[string]json.RawMessage, name string) bool {
	_, ok := obj[name]
	return ok
}
