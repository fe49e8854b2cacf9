package simulator_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

const setTruststore = creds + "api-user/truststore/trust-2026/"

// unchanged fails the test if the request that setTruststore makes was executed.
func unchanged(t *testing.T, sim *simulator.Server) {
	t.Helper()
	credentialIs("MyProject", "api-user", simulator.CredentialState{})(t, sim)
}

func executed(t *testing.T, sim *simulator.Server) {
	t.Helper()
	credentialIs("MyProject", "api-user", simulator.CredentialState{Truststore: "trust-2026"})(t, sim)
}

func statuses(sim *simulator.Server) []int {
	var out []int
	for _, r := range sim.Requests() {
		out = append(out, r.Status)
	}
	return out
}

func wantStatuses(t *testing.T, sim *simulator.Server, want ...int) {
	t.Helper()
	got := statuses(sim)
	if len(got) != len(want) {
		t.Fatalf("recorded statuses %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("recorded statuses %v, want %v", got, want)
		}
	}
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	sim.FailNext(2, http.StatusServiceUnavailable, 3*time.Second)

	res, err := send(t, ts, "", "PUT", setTruststore, "")
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, res, 401, "unauthorized_client", "Invalid token")
	for range 2 {
		res := call(t, ts, "PUT", setTruststore, "")
		wantError(t, res, 503, "service_unavailable", "Simulated fault: Service Unavailable")
		if got := res.header.Get("Retry-After"); got != "3" {
			t.Errorf("Retry-After = %q, want 3", got)
		}
		unchanged(t, sim)
	}
	wantBody(t, call(t, ts, "PUT", setTruststore, ""), 200, deployedMyProject)
	executed(t, sim)
	wantStatuses(t, sim, 401, 503, 503, 200)
}

func TestFailNextRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter time.Duration
		wantStatus int
		code       string
		header     string
	}{
		{"429 rounds up", 429, 1500 * time.Millisecond, 429, "too_many_requests", "2"},
		{"default status", 0, time.Second, 503, "service_unavailable", "1"},
		{"no Retry-After on 500", 500, time.Second, 500, "internal_server_error", ""},
		{"no Retry-After when zero", 503, 0, 503, "service_unavailable", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim, ts := start(t)
			sim.FailNext(1, tc.status, tc.retryAfter)
			res := call(t, ts, "PUT", setTruststore, "")
			if res.status != tc.wantStatus || res.header.Get("Retry-After") != tc.header {
				t.Errorf("got %d Retry-After %q, want %d %q", res.status, res.header.Get("Retry-After"), tc.wantStatus, tc.header)
			}
			wantError(t, res, tc.wantStatus, tc.code, "Simulated fault: "+http.StatusText(tc.wantStatus))
			unchanged(t, sim)
		})
	}
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		sim, ts := start(t)
		sim.FailNext(5, 503, 0)
		sim.FailNext(0, 503, 0)
		wantBody(t, call(t, ts, "PUT", setTruststore, ""), 200, deployedMyProject)
	})
}

func TestErrorRate(t *testing.T) {
	t.Parallel()
	t.Run("JSON", func(t *testing.T) {
		t.Parallel()
		sim, ts := start(t)
		sim.SetFaults(simulator.Faults{ErrorRate: 1, RetryAfter: 2 * time.Second})
		for range 3 {
			res := call(t, ts, "PUT", setTruststore, "")
			wantError(t, res, 503, "service_unavailable", "Simulated fault: Service Unavailable")
			if got := res.header.Get("Retry-After"); got != "2" {
				t.Errorf("Retry-After = %q, want 2", got)
			}
		}
		// Faults come before the token check, as from a proxy in front of APIOps.
		res, err := send(t, ts, "", "PUT", setTruststore, "")
		if err != nil {
			t.Fatal(err)
		}
		wantError(t, res, 503, "service_unavailable", "Simulated fault: Service Unavailable")
		unchanged(t, sim)
		wantStatuses(t, sim, 503, 503, 503, 503)
		sim.SetFaults(simulator.Faults{})
		wantBody(t, call(t, ts, "PUT", setTruststore, ""), 200, deployedMyProject)
		executed(t, sim)
	})
	t.Run("HTML", func(t *testing.T) {
		t.Parallel()
		sim, ts := start(t)
		sim.SetFaults(simulator.Faults{ErrorRate: 1, ErrorStatus: 502, HTMLErrors: true, RetryAfter: time.Second})
		res := call(t, ts, "PUT", setTruststore, "")
		if res.status != 502 {
			t.Fatalf("status = %d, want 502", res.status)
		}
		if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("Content-Type = %q, want text/html", ct)
		}
		if !strings.HasPrefix(res.body, "<html>") || !strings.Contains(res.body, "502 Bad Gateway") {
			t.Errorf("body = %q, want an HTML error page", res.body)
		}
		if got := res.header.Get("Retry-After"); got != "" {
			t.Errorf("Retry-After = %q on a 502", got)
		}
		unchanged(t, sim)
	})
	t.Run("HTML with FailNext", func(t *testing.T) {
		t.Parallel()
		sim, ts := start(t)
		sim.SetFaults(simulator.Faults{HTMLErrors: true})
		sim.FailNext(1, 429, time.Second)
		res := call(t, ts, "PUT", setTruststore, "")
		if res.status != 429 || !strings.Contains(res.body, "429 Too Many Requests") || res.header.Get("Retry-After") != "1" {
			t.Errorf("got %d %q Retry-After %q", res.status, res.body, res.header.Get("Retry-After"))
		}
		unchanged(t, sim)
	})
}

func TestResetRate(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	sim.SetFaults(simulator.Faults{ResetRate: 1})
	if res, err := send(t, ts, "Bearer "+token, "PUT", setTruststore, ""); err == nil {
		t.Fatalf("got %d, want a transport error", res.status)
	}
	unchanged(t, sim)
	reqs := sim.Requests()
	if len(reqs) != 1 || reqs[0].Status != 0 || !reqs[0].Authorized {
		t.Fatalf("recorded %+v, want one authorised request with status 0", reqs)
	}
}

func TestDown(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	sim.Down(time.Hour)
	for range 2 {
		if res, err := send(t, ts, "Bearer "+token, "PUT", setTruststore, ""); err == nil {
			t.Fatalf("got %d while down, want a transport error", res.status)
		}
	}
	unchanged(t, sim)
	sim.Down(0)
	wantBody(t, call(t, ts, "PUT", setTruststore, ""), 200, deployedMyProject)
	executed(t, sim)
	wantStatuses(t, sim, 0, 0, 200)

	// An outage that has already passed lets requests through by itself.
	sim.Down(time.Nanosecond)
	wantBody(t, call(t, ts, "DELETE", creds+"api-user/truststore/", ""), 200, undeployedMyProject)
}

func TestLatency(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	const latency = 50 * time.Millisecond
	sim.SetFaults(simulator.Faults{Latency: latency})
	began := time.Now()
	wantBody(t, call(t, ts, "PUT", setTruststore, ""), 200, deployedMyProject)
	if took := time.Since(began); took < latency {
		t.Errorf("answered after %v, want at least %v", took, latency)
	}
}

func TestLatencyAbandoned(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	sim.SetFaults(simulator.Faults{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "PUT", ts.URL+setTruststore, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if res, err := ts.Client().Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("got %d, want the client's deadline to end the request", res.StatusCode)
	}
	// The handler is still waiting or has given up; either way it never executes.
	unchanged(t, sim)
	for _, status := range statuses(sim) {
		if status != 0 {
			t.Errorf("recorded status %d for an abandoned request", status)
		}
	}
}

func TestPartialDeployment(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	sim.SetFaults(simulator.Faults{FailEnvironments: []string{"staging", "qa"}})

	wantBody(t, call(t, ts, "PUT", setTruststore, ""), 200, `{"success":true,"deploymentResult":{"success":false,`+
		`"message":"Deployment completed with errors","environmentResults":[`+
		`{"environmentName":"production","success":true,"message":"Deployed successfully"},`+
		`{"environmentName":"staging","success":false,"message":"Gateway timeout"}]}}`)
	executed(t, sim)

	wantBody(t, call(t, ts, "DELETE", keystores+"legacy-2019/", ""), 200, `{"success":true,"deploymentResult":{"success":false,`+
		`"message":"Undeployment completed with errors","environmentResults":[`+
		`{"environmentName":"production","success":true,"message":"Undeployed successfully"},`+
		`{"environmentName":"staging","success":false,"message":"Gateway timeout"}]}}`)
	keystoreExists("MyProject", "legacy-2019", false)(t, sim)

	// Environments fail by name in every project.
	wantBody(t, call(t, ts, "PUT", "/apiops/projects/TeamA/credentials/svc-orders/truststore/team-a-trust/", ""), 200,
		`{"success":true,"deploymentResult":{"success":false,"message":"Deployment completed with errors","environmentResults":[`+
			`{"environmentName":"production","success":true,"message":"Deployed successfully"},`+
			`{"environmentName":"staging","success":false,"message":"Gateway timeout"},`+
			`{"environmentName":"test","success":true,"message":"Deployed successfully"}]}}`)
	// An environment no project has fails nothing.
	sim.SetFaults(simulator.Faults{FailEnvironments: []string{"qa"}})
	wantBody(t, call(t, ts, "PUT", creds+"partner-b/truststore/trust-2026/", ""), 200, deployedMyProject)
}
