package worker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
)

// TestJudgeLive: an environment is live only when every member says so, in each form
// the pages show; a missing or mistyped member is never taken for live.
func TestJudgeLive(t *testing.T) {
	const (
		deployed = `{"environmentName":"production","deployed":true,"revision":4,"redeployRequired":false}`
		healthy  = `{"podsActive":2,"podCount":2,"inconsistent":false,"pods":[{"podName":"p-0","active":true,"revision":4},{"podName":"p-1","active":true,"revision":4}]}`
	)
	for _, tc := range []struct {
		name, status, health string
		baseline             bool
		problem              string // "" for live
	}{
		{"live", deployed, healthy, false, ""},
		{"podsActive as a flag", deployed, `{"podsActive":true,"inconsistent":false}`, false, ""},
		{"no deployed member, a revision", `{"revision":4,"redeployRequired":false}`, healthy, false, ""},
		{"redeploy required", `{"deployed":true,"revision":4,"redeployRequired":true}`, healthy, false, "redeploy is required"},
		{"redeploy required, baseline", `{"deployed":true,"revision":4,"redeployRequired":true}`, healthy, true, ""},
		{"not deployed", `{"deployed":false,"revision":4,"redeployRequired":false}`, healthy, false, "not deployed"},
		{"inconsistent", deployed, `{"podsActive":2,"podCount":2,"inconsistent":true}`, false, "inconsistent"},
		{"a pod down", deployed, `{"podsActive":1,"podCount":2,"inconsistent":false}`, false, "1 of 2 pods active"},
		{"a pod listed inactive", deployed, `{"podsActive":2,"podCount":2,"inconsistent":false,"pods":[{"podName":"p-0","active":false,"revision":4}]}`, false, "pods active"},
		{"a pod lags", deployed, `{"podsActive":2,"podCount":2,"inconsistent":false,"pods":[{"podName":"p-0","active":true,"revision":3}]}`, false, "runs revision 3"},
		{"podsActive false", deployed, `{"podsActive":false,"inconsistent":false}`, false, "pods active"},
		{"no pods active", deployed, `{"podsActive":0,"podCount":2,"inconsistent":false}`, false, "0 of 2 pods active"},
		{"a count of active pods, no pod count", deployed, `{"podsActive":1,"inconsistent":false}`, false, "route-health"},
		{"podCount as text", deployed, `{"podsActive":2,"podCount":"2","inconsistent":false}`, false, "route-health"},
		{"revision 0", `{"deployed":true,"revision":0,"redeployRequired":false}`, healthy, false, "no revision deployed"},
		{"revision as text", `{"deployed":true,"revision":"4","redeployRequired":false}`, healthy, false, "deploy-status"},
		{"no redeployRequired", `{"deployed":true,"revision":4}`, healthy, false, "deploy-status"},
		{"deployed as text", `{"deployed":"true","revision":4,"redeployRequired":false}`, healthy, false, "deploy-status"},
		{"no inconsistent", deployed, `{"podsActive":2,"podCount":2}`, false, "route-health"},
		{"podsActive as text", deployed, `{"podsActive":"2","inconsistent":false}`, false, "route-health"},
		{"deployed null", `{"deployed":null,"revision":4,"redeployRequired":false}`, healthy, false, "deploy-status"},
		{"pods not a list", deployed, `{"podsActive":2,"inconsistent":false,"pods":{}}`, false, "route-health"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var status, health map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tc.status), &status); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.health), &health); err != nil {
				t.Fatal(err)
			}
			var v messages.EnvironmentVerification
			problem := judgeLive(&v, status, health, tc.baseline)
			if tc.problem == "" && problem != "" || tc.problem != "" && !strings.Contains(problem, tc.problem) {
				t.Errorf("problem %q, want %q", problem, tc.problem)
			}
		})
	}
}
