package simulator_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

const (
	payments       = myProject + "apiProxies/PaymentsAPI/"
	paymentsDeploy = payments + "environments/staging/"
	paymentsStatus = payments + "environments/staging/deploy-status/"
	paymentsHealth = payments + "environments/staging/route-health/"
)

// wantRefusal checks a refusal in dialect d: the seed dialect's error body
// with seedStatus (400 bad_request or 404 not_found), the envelope with 400 in
// the others.
func wantRefusal(t testing.TB, d simulator.Dialect, res response, seedStatus int, text string) {
	t.Helper()
	if d != seedD {
		wantJSON(t, res, 400, `{"status":"FAILURE","resultMessage":`+quote(text)+`}`)
		return
	}
	code := "bad_request"
	if seedStatus == 404 {
		code = "not_found"
	}
	wantError(t, res, seedStatus, code, text)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// deployedTo is a deployment's answer for one environment of MyProject in
// dialect d, as the mTLS PATCH that deploys gives it.
func deployedTo(d simulator.Dialect, env, message string, undeploy, ok bool) string {
	name, done := "Deployment", "Deployed successfully"
	if undeploy {
		name, done = "Undeployment", "Undeployed successfully"
	}
	index := map[string]int{"production": 1, "staging": 2}[env]
	text, verdict, podOK, lastMillis := done, "successfully", true, 45
	if !ok {
		text, verdict, podOK, lastMillis = "Gateway timeout", "with errors", false, 30000
	}
	byEnv := fmt.Sprintf(`{"success":%t,"message":"%s completed %s","environmentResults":[{"environmentName":%q,"success":%t,"message":%q}]}`,
		ok, name, verdict, env, ok, text)
	switch d {
	case docsD:
		return `{"status":"SUCCESS","deploymentResult":` + byEnv + `}`
	case openapiD:
		return fmt.Sprintf(`{"status":"SUCCESS","resultMessage":%q,"resultList":[],"resultCount":0,"deploymentResult":{"success":%t,"responseTime":%d,"detailList":[`+
			`{"envName":%[4]q,"podName":"%[4]s-worker-0","podIp":"10.0.%[5]d.1","success":true,"detail":%[6]q,"responseTime":42},`+
			`{"envName":%[4]q,"podName":"%[4]s-worker-1","podIp":"10.0.%[5]d.2","success":%[7]t,"detail":%[8]q,"responseTime":%[3]d}]}}`,
			message, ok, lastMillis, env, index, done, podOK, text)
	case mixedD:
		return fmt.Sprintf(`{"success":true,"deploymentResult":{"success":%t,"deploymentResults":[{"environmentName":%q,"success":%t,"message":%q}]}}`, ok, env, ok, text)
	default:
		return `{"success":true,"deploymentResult":` + byEnv + `}`
	}
}

// routeEntry is a deploy-status or route-health entry in dialect d.
func routeEntry(d simulator.Dialect, entry string) string {
	if d == seedD {
		return `{"success":true,` + entry[1:]
	}
	return `{"status":"SUCCESS","resultList":[` + entry + `],"resultCount":1}`
}

func deployStatusEntry(env string, deployed bool, revision int, redeploy bool) string {
	return fmt.Sprintf(`{"environmentName":%q,"deployed":%t,"revision":%d,"redeployRequired":%t}`, env, deployed, revision, redeploy)
}

// TestProxyDeploymentBodies: deploy, undeploy, rollback, deploy-status and
// route-health in every dialect, with their main refusals.
func TestProxyDeploymentBodies(t *testing.T) {
	t.Parallel()
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, d)
			wantJSON(t, call(t, ts, "GET", paymentsStatus, ""), 200, routeEntry(d, deployStatusEntry("staging", true, 1, false)))
			healthy := `{"environmentName":"staging","podsActive":2,"podCount":2,"inconsistent":false,"pods":[` +
				`{"podName":"staging-worker-0","podIp":"10.0.2.1","active":true,"revision":1},` +
				`{"podName":"staging-worker-1","podIp":"10.0.2.2","active":true,"revision":1}]}`
			wantJSON(t, call(t, ts, "GET", paymentsHealth, ""), 200, routeEntry(d, healthy))

			wantJSON(t, call(t, ts, "POST", paymentsDeploy, ""), 200,
				deployedTo(d, "staging", "ApiProxy (name: PaymentsAPI) is deployed to Environment (name: staging).", false, true))
			wantJSON(t, call(t, ts, "DELETE", paymentsDeploy, ""), 200,
				deployedTo(d, "staging", "ApiProxy (name: PaymentsAPI) is undeployed from Environment (name: staging).", true, true))
			wantJSON(t, call(t, ts, "GET", paymentsStatus, ""), 200, routeEntry(d, deployStatusEntry("staging", false, 1, false)))
			down := `{"environmentName":"staging","podsActive":0,"podCount":2,"inconsistent":false,"pods":[` +
				`{"podName":"staging-worker-0","podIp":"10.0.2.1","active":false,"revision":1},` +
				`{"podName":"staging-worker-1","podIp":"10.0.2.2","active":false,"revision":1}]}`
			wantJSON(t, call(t, ts, "GET", paymentsHealth, ""), 200, routeEntry(d, down))
			wantJSON(t, call(t, ts, "POST", payments+"1/rollback/?environmentName=staging", ""), 200,
				deployedTo(d, "staging", "ApiProxy (name: PaymentsAPI) is rolled back to revision 1 on Environment (name: staging).", false, true))
			wantJSON(t, call(t, ts, "GET", paymentsStatus, ""), 200, routeEntry(d, deployStatusEntry("staging", true, 1, false)))

			sim.SetFaults(simulator.Faults{FailEnvironments: []string{"staging"}})
			wantJSON(t, call(t, ts, "DELETE", paymentsDeploy, ""), 200,
				deployedTo(d, "staging", "ApiProxy (name: PaymentsAPI) is undeployed from Environment (name: staging).", true, false))
			if _, _, deployed, _ := sim.Deployed("MyProject", "PaymentsAPI", "staging"); !deployed {
				t.Error("a failed undeployment undeployed")
			}
			sim.SetFaults(simulator.Faults{})

			for _, path := range []string{paymentsDeploy, paymentsStatus, paymentsHealth} {
				method := map[string]string{paymentsDeploy: "POST"}[path]
				if method == "" {
					method = "GET"
				}
				res := call(t, ts, method, myProject+"apiProxies/NoAPI/"+path[len(payments):], "")
				wantRefusal(t, d, res, 404, "ApiProxy (name: NoAPI) was not found!")
				res = call(t, ts, method, payments+"environments/qa/"+path[len(paymentsDeploy):], "")
				wantRefusal(t, d, res, 404, "Environment (name: qa) was not found!")
			}
			wantRefusal(t, d, call(t, ts, "DELETE", myProject+"apiProxies/NoAPI/environments/staging/", ""), 404, "ApiProxy (name: NoAPI) was not found!")
			wantRefusal(t, d, call(t, ts, "POST", payments+"2/rollback/?environmentName=staging", ""), 400,
				"Revision 2 of ApiProxy (name: PaymentsAPI) was not found!")
			wantRefusal(t, d, call(t, ts, "POST", payments+"1/rollback/", ""), 400, "environmentName is required")
			wantRefusal(t, d, call(t, ts, "POST", payments+"1/rollback/?environmentName=qa", ""), 400, "Environment (name: qa) was not found!")
			wantRefusal(t, d, call(t, ts, "POST", payments+"latest/rollback/?environmentName=staging", ""), 400,
				`Invalid revision: "latest" (expected a revision number)`)
			wantRefusal(t, d, call(t, ts, "POST", myProject+"apiProxies/NoAPI/1/rollback/?environmentName=staging", ""), 404,
				"ApiProxy (name: NoAPI) was not found!")
		})
	}
}

// TestProxyRevisions: a PATCH saves settings; a deployment makes them a new
// revision only when they changed; a rollback runs an old revision without
// touching the saved settings, so a redeploy is required until the latest is
// deployed again.
func TestProxyRevisions(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	wantStatus := func(env string, deployed bool, revision int, redeploy bool) {
		t.Helper()
		wantJSON(t, call(t, ts, "GET", payments+"environments/"+env+"/deploy-status/", ""), 200,
			routeEntry(seedD, deployStatusEntry(env, deployed, revision, redeploy)))
	}
	seeded, _ := sim.Proxy("MyProject", "PaymentsAPI")

	// Saved, not deployed: both environments need a redeploy.
	wantBody(t, call(t, ts, "PATCH", payments+"settings/mtls/", `{"supportedProtocolList":["TLS_1_3"]}`), 200, mtlsOK)
	wantStatus("production", true, 1, true)
	wantStatus("staging", true, 1, true)

	// The docs dialect's PATCH deploys to production only: revision 2 there.
	sim.SetDialect(docsD)
	call(t, ts, "PATCH", payments+"settings/mtls/", `{"deploy":true,"deployTargetEnvironmentNameList":["production"]}`)
	sim.SetDialect(seedD)
	wantStatus("production", true, 2, false)
	wantStatus("staging", true, 1, true)
	settings, revision, deployed, ok := sim.Deployed("MyProject", "PaymentsAPI", "production")
	if !ok || revision != 2 || !deployed || !slices.Equal(settings.SupportedProtocolList, []string{"TLS_1_3"}) {
		t.Errorf("Deployed(production) = %+v, %d, %v, %v; want revision 2 with TLS_1_3", settings, revision, deployed, ok)
	}
	if settings, revision, _, _ := sim.Deployed("MyProject", "PaymentsAPI", "staging"); revision != 1 || !slices.Equal(settings.SupportedProtocolList, seeded.SupportedProtocolList) {
		t.Errorf("Deployed(staging) = %+v, %d; want revision 1 as seeded", settings, revision)
	}

	// Deploying unchanged settings takes no new revision.
	call(t, ts, "POST", payments+"environments/staging/", "")
	wantStatus("staging", true, 2, false)

	// A rollback runs revision 1 and keeps the saved settings.
	call(t, ts, "POST", payments+"1/rollback/?environmentName=production", "")
	wantStatus("production", true, 1, true)
	if saved, _ := sim.Proxy("MyProject", "PaymentsAPI"); !slices.Equal(saved.SupportedProtocolList, []string{"TLS_1_3"}) {
		t.Errorf("the rollback changed the saved settings: %+v", saved)
	}
	call(t, ts, "POST", payments+"2/rollback/?environmentName=production", "")
	wantStatus("production", true, 2, false)

	// A failed environment keeps its revision; the snapshot is taken anyway.
	call(t, ts, "PATCH", payments+"settings/mtls/", `{"hostnameVerifierType":"DEFAULT"}`)
	sim.SetFaults(simulator.Faults{FailEnvironments: []string{"staging"}})
	call(t, ts, "POST", payments+"environments/staging/", "")
	wantStatus("staging", true, 2, true)
	sim.SetFaults(simulator.Faults{})
	call(t, ts, "POST", payments+"environments/staging/", "")
	wantStatus("staging", true, 3, false)
	if _, _, _, ok := sim.Deployed("MyProject", "NoAPI", "staging"); ok {
		t.Error("Deployed of an unknown proxy is ok")
	}
}

// TestRouteFaults: an unhealthy route loses a pod once deployed past the
// revision it ran when the fault was set, until rolled back; a lagging one
// shows the previous revision on one pod for n reads after each deployment.
func TestRouteFaults(t *testing.T) {
	t.Parallel()
	sim, ts := startIn(t, docsD)
	type health struct {
		PodsActive, PodCount int
		Inconsistent         bool
		Pods                 []struct {
			Active   bool
			Revision int
		}
	}
	read := func() health {
		t.Helper()
		var body struct{ ResultList []health }
		res := call(t, ts, "GET", paymentsHealth, "")
		if err := json.Unmarshal([]byte(res.body), &body); err != nil || len(body.ResultList) != 1 {
			t.Fatalf("route-health: %d %s", res.status, res.body)
		}
		return body.ResultList[0]
	}
	wantHealth := func(active int, inconsistent bool, revisions ...int) {
		t.Helper()
		h := read()
		var got []int
		for _, p := range h.Pods {
			got = append(got, p.Revision)
		}
		if h.PodsActive != active || h.PodCount != 2 || h.Inconsistent != inconsistent || !slices.Equal(got, revisions) {
			t.Errorf("route-health = %+v; want %d active, inconsistent %v, revisions %v", h, active, inconsistent, revisions)
		}
	}
	newRevision := func(protocol string) {
		t.Helper()
		call(t, ts, "PATCH", payments+"settings/mtls/", `{"supportedProtocolList":["`+protocol+`"],"deploy":true,"deployTargetEnvironmentNameList":["staging"]}`)
	}

	sim.SetRouteFault("MyProject", "PaymentsAPI", "staging", simulator.RouteFault{Unhealthy: true})
	wantHealth(2, false, 1, 1)
	newRevision("TLS_1_3") // revision 2
	wantHealth(1, true, 2, 1)
	wantHealth(1, true, 2, 1)
	if h := read(); h.Pods[1].Active {
		t.Error("the last pod is active")
	}
	call(t, ts, "POST", payments+"1/rollback/?environmentName=staging", "")
	wantHealth(2, false, 1, 1)
	call(t, ts, "POST", payments+"environments/staging/", "") // back to 2
	wantHealth(1, true, 2, 1)

	// Lag: two reads behind after each deployment, then caught up.
	sim.SetRouteFault("MyProject", "PaymentsAPI", "staging", simulator.RouteFault{LagReads: 2})
	wantHealth(2, false, 2, 2) // setting the fault starts no lag
	newRevision("TLS_1_2")     // revision 3
	wantHealth(2, true, 3, 2)
	wantHealth(2, true, 3, 2)
	wantHealth(2, false, 3, 3)
	call(t, ts, "POST", payments+"1/rollback/?environmentName=staging", "")
	wantHealth(2, true, 1, 3)
	sim.SetRouteFault("MyProject", "PaymentsAPI", "staging", simulator.RouteFault{})
	wantHealth(2, false, 1, 1)

	// Other environments are untouched.
	var body struct{ ResultList []health }
	_ = json.Unmarshal([]byte(call(t, ts, "GET", payments+"environments/production/route-health/", "").body), &body)
	if h := body.ResultList[0]; h.PodsActive != 2 || h.Inconsistent {
		t.Errorf("production: %+v", h)
	}

	defer func() {
		if recover() == nil {
			t.Error("SetRouteFault of an unknown environment did not panic")
		}
	}()
	sim.SetRouteFault("MyProject", "PaymentsAPI", "qa", simulator.RouteFault{Unhealthy: true})
}
