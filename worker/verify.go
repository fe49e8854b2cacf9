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
// starting again. Reads go under the same rules as a change's requests: the lease,
// the project's gate (a paused project is not read), a request slot. Time spent
// waiting for those, or fenced, does not count against the deadline: an outage or a
// failover must not turn a healthy change into a failed verify, and a rollback.

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
		r, err := e.verifyRound(ctx, t, p, seen)
		deadline = deadline.Add(r.waited)
		switch {
		case err != nil:
			return outcome{}, err
		case r.expired != nil:
			return *r.expired, nil
		case r.failure != nil:
			return outcome{status: messages.StatusFailed, err: r.failure, verification: seen}, nil
		case r.done:
			return outcome{status: messages.StatusSucceeded, verification: seen}, nil
		case r.interrupted: // the next round waits for the lease or the gate
			continue
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

// round is what one round of reads came to.
type round struct {
	done bool
	// failure is set when APIOps refused a read for good (an unknown proxy or
	// environment, an answer the worker does not recognise): waiting longer would not
	// change it.
	failure *messages.Error
	// interrupted: the instance was fenced, or APIOps paused the project, before every
	// environment was read.
	interrupted bool
	// waited is the time spent waiting for the lease, the gate and a slot.
	waited time.Duration
	// expired: the verify's notAfter passed before its first read.
	expired *outcome
}

// verifyRound reads every environment not verified yet, once.
func (e *executor) verifyRound(ctx context.Context, t *task, p *messages.ProxyVerify, seen []messages.EnvironmentVerification) (round, error) {
	started := e.clock.Now()
	gate := e.gates.of(t.cmd.Project)
	release, expired, err := e.admit(t, gate)
	waited := e.clock.Now().Sub(started)
	switch {
	case err != nil:
		return round{}, err
	case expired != nil:
		return round{expired: expired}, nil
	case release == nil: // fenced meanwhile
		return round{interrupted: true, waited: waited}, nil
	}
	defer release()
	r := round{done: true, waited: waited}
	for i := range seen {
		if seen[i].Verified {
			continue
		}
		if !e.mayStart() {
			return round{interrupted: true, waited: r.waited}, nil
		}
		v, failure := e.readEnvironment(ctx, t, gate, p, seen[i].EnvironmentName)
		v.Reads = seen[i].Reads + 1
		switch {
		case failure == errReadInterrupted:
			return round{interrupted: true, waited: r.waited}, nil
		case failure != nil && failure.Code == transientRead:
			v.Problem = failure.Message
		case failure != nil:
			seen[i] = v
			return round{failure: failure, waited: r.waited}, nil
		}
		seen[i] = v
		r.done = r.done && v.Verified
	}
	return r, nil
}

// readEnvironment reads one environment's deploy-status and route-health, and the
// keystores to read back, and judges them; failure is why a read failed.
func (e *executor) readEnvironment(ctx context.Context, t *task, gate *gate, p *messages.ProxyVerify, env string) (v messages.EnvironmentVerification, failure *messages.Error) {
	base := []string{"apiops", "projects", t.cmd.Project, "apiProxies", p.APIProxyName, "environments", env}
	v = messages.EnvironmentVerification{EnvironmentName: env}
	byEnvironment := func(entry map[string]json.RawMessage, only bool) bool {
		named, _ := apiops.Member[string](entry, "environmentName")
		return named == env || named == "" && only
	}
	status, failure := e.read(ctx, t, gate, append(slices.Clone(base), "deploy-status"), byEnvironment)
	if failure != nil {
		v.Problem = "deploy-status: " + failure.Message
		return v, failure
	}
	health, failure := e.read(ctx, t, gate, append(slices.Clone(base), "route-health"), byEnvironment)
	if failure != nil {
		v.Problem = "route-health: " + failure.Message
		return v, failure
	}
	if problem := judgeLive(&v, status, health, p.Baseline); problem != "" {
		v.Problem = problem
		return v, nil
	}
	for _, ks := range []*string{p.KeyStoreName, p.TrustStoreName} {
		if ks == nil {
			continue
		}
		byName := func(entry map[string]json.RawMessage, _ bool) bool {
			name, _ := apiops.Member[string](entry, "name")
			return name == *ks
		}
		keystore, failure := e.read(ctx, t, gate, []string{"apiops", "projects", t.cmd.Project, "keystores", *ks}, byName)
		if failure != nil {
			v.Problem = "keystore " + *ks + ": " + failure.Message
			return v, failure
		}
		if !holdsEnvironment(keystore, env) {
			v.Problem = fmt.Sprintf("keystore %s holds no file for %s", *ks, env)
			return v, nil
		}
	}
	v.Verified = true
	return v, nil
}

// transientRead marks a read that failed in a way a later read may not (a network
// error, a 5xx, a 429, a refused token): the verify reads again at its next round.
const transientRead = "transient"

// errReadInterrupted: no read went out (the instance was fenced), or APIOps's answer
// paused the project: the round stops, and the next one waits.
var errReadInterrupted = &messages.Error{Code: "interrupted", Message: "the read was not sent, or APIOps paused the project"}

// read sends one GET and returns the entry of its answer that match picks (told
// whether it is the only one); on failure, why. What APIOps answered goes to the
// project's gate, as a change's answer does.
func (e *executor) read(ctx context.Context, t *task, gate *gate, path []string, match func(entry map[string]json.RawMessage, only bool) bool) (map[string]json.RawMessage, *messages.Error) {
	req := messages.APIRequest{Method: http.MethodGet, Path: path}
	var entries []map[string]json.RawMessage
	a := e.send(ctx, t, req, "", func(ctx context.Context) (status int, err error) {
		if entries, err = e.api.Read(ctx, req); err == nil {
			status = http.StatusOK
		}
		return status, err
	})
	if !a.sent { // fenced while waiting for a token or a connection
		return nil, errReadInterrupted
	}
	err, apiErr := a.err, a.apiErr
	switch kind := apiops.KindOf(err); {
	case err == nil || kind == apiops.Permanent:
		gate.answered()
	case kind == apiops.Unauthorized:
		gate.unauthorized(err)
		return nil, errReadInterrupted
	case gate.transientFailure(err):
		return nil, errReadInterrupted
	}
	switch {
	case err != nil && apiops.KindOf(err) == apiops.Permanent:
		return nil, failedOutcome(apiErr, err, noSecrets).err
	case err != nil:
		return nil, &messages.Error{Code: transientRead, Message: failedOutcome(apiErr, err, noSecrets).err.Message}
	}
	for _, entry := range entries {
		if match(entry, len(entries) == 1) {
			return entry, nil
		}
	}
	return nil, &messages.Error{Code: messages.CodeUnrecognisedResponse, Message: fmt.Sprintf("%s answered no entry for it", req)}
}

// noSecrets scrubs nothing: a read sends no secret.
var noSecrets = messages.NewScrubber()

// judgeLive fills v from an environment's deploy-status and route-health entries and
// returns why the environment is not live, "" when it is; a baseline may run a
// revision behind the saved settings. A member that is missing or of another type is
// a problem too: an answer not understood is never taken for live.
func judgeLive(v *messages.EnvironmentVerification, status, health map[string]json.RawMessage, baseline bool) string {
	revision, hasRevision := apiops.Member[int](status, "revision")
	redeploy, hasRedeploy := apiops.Member[bool](status, "redeployRequired")
	deployed, hasDeployed := apiops.Member[bool](status, "deployed")
	inconsistent, hasInconsistent := apiops.Member[bool](health, "inconsistent")
	pods, hasPods := apiops.Member[[]struct {
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
	case !hasRevision || !hasRedeploy || sent(status, "deployed") && !hasDeployed:
		return "deploy-status: no revision and redeployRequired in a form the worker reads"
	case !hasInconsistent || !known || sent(health, "pods") && !hasPods:
		return "route-health: no inconsistent, and podsActive with podCount or pods, in a form the worker reads"
	case revision < 1:
		return "no revision deployed"
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
	v.PodCount, _ = apiops.Member[int](health, "podCount")
	inactive := 0
	for _, pod := range v.Pods {
		if !pod.Active {
			inactive++
		}
	}
	if flag, ok := apiops.Member[bool](health, "podsActive"); ok {
		v.PodsActive = len(v.Pods) - inactive
		return flag && inactive == 0, true
	}
	count, ok := apiops.Member[int](health, "podsActive")
	_, hasCount := apiops.Member[int](health, "podCount")
	if !ok || sent(health, "podCount") && !hasCount || !hasCount && len(v.Pods) == 0 {
		return false, false // a count of active pods says nothing without how many there are
	}
	v.PodsActive = count
	total := max(v.PodCount, len(v.Pods))
	return count > 0 && count >= total && inactive == 0, true
}

// sent reports whether obj has the member name at all: a member sent as null, which
// apiops.Member reads as absent, is not understood either.
func sent(obj map[string]json.RawMessage, name string) bool {
	_, ok := obj[name]
	return ok
}

// holdsEnvironment reports whether a keystore entry lists a file for env. Where the
// entries name their environment by id alone (list-keystores.mdx) and APIOps maps no
// id to a name, a keystore with any file passes: the read confirms that it exists.
func holdsEnvironment(keystore map[string]json.RawMessage, env string) bool {
	list, _ := apiops.Member[[]namedEnvironment](keystore, "keyStoreEnvironmentList")
	byID := len(list) > 0 && !slices.ContainsFunc(list, func(e namedEnvironment) bool { return e.EnvironmentName != "" })
	return byID || slices.Contains(list, namedEnvironment{env})
}

// namedEnvironment is the member of an entry that names its environment.
type namedEnvironment struct {
	EnvironmentName string `json:"environmentName"`
}
