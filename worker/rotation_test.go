package worker_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/messages"
)

// TestStagedRotation runs the real apiopsctl rotate --stages staging,production
// against the real worker binary and the simulator: a new keystore, MyAPI pointed at
// it one environment at a time, each verified. With production's route staying
// unhealthy after its deploy, the plan fails at production's verify, rolls production
// back to the revision it ran before, and leaves staging on the new keystore; with
// healthy routes it succeeds, its result naming what each verify saw.
func TestStagedRotation(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the worker and apiopsctl binaries")
	}
	worker, ctl := buildWorker(t), buildCtl(t)
	cert, key := selfSigned(t, "client-2027")
	for _, tc := range []struct {
		name      string
		unhealthy bool
		dialect   simulator.Dialect
	}{
		{"production's route stays unhealthy", true, simulator.DialectDocs},
		{"healthy routes", false, simulator.DialectMixed},
		{"healthy routes, openapi", false, simulator.DialectOpenAPI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each waits for verifies' deadlines and backoffs
			e := newEnv(t)
			e.sim.SetDialect(tc.dialect)
			e.startProcess(worker, []string{"APIOPS_TOKEN=sim-token"})
			_, before, _, _ := e.sim.Deployed("MyProject", "MyAPI", "production")
			if tc.unhealthy {
				e.sim.SetRouteFault("MyProject", "MyAPI", "production", simulator.RouteFault{Unhealthy: true})
			}
			// A pod that lags behind for a few reads must not fail a verify: it waits.
			e.sim.SetRouteFault("MyProject", "MyAPI", "staging", simulator.RouteFault{LagReads: 2})
			run := exec.Command(ctl, "rotate", "--nats-url", e.nats.ClientURL(), "--project", "MyProject", "--keystore", "client-2027",
				"--cert", cert, "--key", key, "--env", "production", "--env", "staging", "--mtls-proxy", "MyAPI",
				"--stages", "staging,production", "--verify-timeout", "3s", "--output", "json", "--timeout", "60s")
			var stdout, stderr bytes.Buffer
			run.Stdout, run.Stderr = &stdout, &stderr
			err := run.Run()
			var res messages.Result
			if jerr := json.Unmarshal(lastLine(stdout.Bytes()), &res); jerr != nil {
				t.Fatalf("rotate: %v; stdout %q; stderr %s", jerr, stdout.String(), stderr.String())
			}
			staging, _, _, _ := e.sim.Deployed("MyProject", "MyAPI", "staging")
			production, after, _, _ := e.sim.Deployed("MyProject", "MyAPI", "production")
			if staging.KeyStoreName != "client-2027" {
				t.Errorf("staging runs keystore %q, want client-2027", staging.KeyStoreName)
			}
			// The steps: create; staging: verify, mTLS, deploy, verify; production: the same.
			if !tc.unhealthy {
				if err != nil || res.Status != messages.StatusSucceeded {
					t.Fatalf("rotate: %v, status %s (%+v); stderr %s", err, res.Status, res.Error, stderr.String())
				}
				if production.KeyStoreName != "client-2027" {
					t.Errorf("production runs keystore %q, want client-2027", production.KeyStoreName)
				}
				for _, i := range []int{4, 8} {
					v := res.Steps[i].Verification
					if len(v) != 1 || !v[0].Verified || v[0].PodsActive != v[0].PodCount || v[0].PodCount == 0 || len(v[0].Pods) == 0 {
						t.Errorf("step %d's verification: %+v", i, v)
					}
				}
				if v := res.Steps[4].Verification; len(v) == 1 && v[0].Reads < 2 {
					t.Errorf("staging's lagging pod was verified at the first read: %+v", v)
				}
				return
			}
			if res.Status != messages.StatusFailed || res.FailedStep == nil || *res.FailedStep != 8 {
				t.Fatalf("status %s, failed step %v, want failed at 8 (production's verify): %+v", res.Status, res.FailedStep, res.Error)
			}
			v := res.Steps[8]
			if v.Error == nil || v.Error.Code != messages.CodeVerifyFailed || len(v.Verification) != 1 || v.Verification[0].Verified ||
				!strings.Contains(v.Error.Message, "production") {
				t.Errorf("production's verify: %+v, %+v", v.Error, v.Verification)
			}
			var rolledBack bool
			for _, u := range res.OnFailure {
				switch {
				case u.Type == "proxy.rollback" && u.Status == messages.StatusSucceeded:
					rolledBack = true
				case u.Status != messages.StatusSkipped:
					t.Errorf("onFailure %s ran: %s (only production's rollback should)", u.ID, u.Status)
				}
			}
			if !rolledBack || after != before || production.KeyStoreName == "client-2027" {
				t.Errorf("production: revision %d (before the plan %d), keystore %q; rolled back: %v", after, before, production.KeyStoreName, rolledBack)
			}
			if err == nil {
				t.Error("rotate exited 0 for a plan that failed")
			}
		})
	}
}

// buildCtl compiles cmd/apiopsctl for tests that run it as a process.
func buildCtl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "apiopsctl")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/apiopsctl").CombinedOutput(); err != nil {
		t.Fatalf("build apiopsctl: %v\n%s", err, out)
	}
	return bin
}

// selfSigned writes a certificate, valid for a year, and its key as PEM files.
func selfSigned(t *testing.T, cn string) (certFile, keyFile string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func lastLine(out []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	return lines[len(lines)-1]
}

// TestPlanKilledMidVerifyResumes kills the worker process with SIGKILL while a plan's
// verify waits for production's route, which stays unhealthy; the route heals, and a
// new worker process resumes the plan at the verify: the plan succeeds with one
// result, and the steps before the verify are not sent to APIOps again.
func TestPlanKilledMidVerifyResumes(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the worker binary")
	}
	bin := buildWorker(t)
	e := newEnv(t)
	e.sim.SetRouteFault("MyProject", "MyAPI", "production", simulator.RouteFault{Unhealthy: true})
	first, _ := e.startProcess(bin, []string{"APIOPS_TOKEN=sim-token"})
	e.publishLine([]byte(`{"id":"verify-crash","type":"plan","project":"MyProject","steps":[
		{"type":"proxy.verify","params":{"apiProxyName":"MyAPI","environmentNameList":["production"],"baseline":true}},
		{"type":"proxy.mtls.update","params":{"apiProxyName":"MyAPI","keyStoreName":"client-2026"}},
		{"type":"proxy.deploy","params":{"apiProxyName":"MyAPI","environmentName":"production"}},
		{"type":"proxy.verify","params":{"apiProxyName":"MyAPI","environmentNameList":["production"],"timeoutSeconds":600}}],
		"onFailure":[{"type":"proxy.rollback","params":{"apiProxyName":"MyAPI","environmentName":"production"}}]}`))
	healthReads := func() (n int) {
		for _, r := range e.sim.Requests() {
			if strings.HasSuffix(r.Path, "/production/route-health/") {
				n++
			}
		}
		return n
	}
	eventually(t, 30*time.Second, "the last verify reading", func() bool { return healthReads() >= 3 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	changes := func() (n int) {
		for _, r := range e.sim.Requests() {
			if r.Method != http.MethodGet {
				n++
			}
		}
		return n
	}
	before := changes()
	e.sim.SetRouteFault("MyProject", "MyAPI", "production", simulator.RouteFault{})
	_, logs := e.startProcess(bin, []string{"APIOPS_TOKEN=sim-token"})
	var res *result
	for deadline := time.After(60 * time.Second); res == nil; {
		select {
		case msg := <-e.results:
			if r := decodeResult(t, msg); r.ID == "verify-crash" {
				res = r
			}
		case <-deadline:
			t.Fatalf("no plan result after the restart; logs:\n%s", logs.String())
		}
	}
	if res.Status != messages.StatusSucceeded || len(res.Steps) != 4 || !res.Steps[3].Verification[0].Verified {
		t.Fatalf("plan result %s", res.raw)
	}
	if after := changes(); after != before {
		t.Errorf("%d changes sent after the restart, want none (the mTLS change and the deploy were recorded)", after-before)
	}
	eventually(t, 10*time.Second, "every command acknowledged", func() bool { return e.pending() == 0 })
	stored := 0
	for _, m := range e.streamMsgs("APIOPS_RESULTS") {
		if r := decodeResult(t, natsMsg(m)); r.ID == "verify-crash" {
			stored++
		}
	}
	if stored != 1 {
		t.Errorf("%d stored results for the plan, want 1", stored)
	}
}

// TestVerifyOutlastsAnOutage: APIOps answers 503 for longer than a verify's deadline;
// the project pauses, and the time paused does not count against the deadline, so the
// verify succeeds once APIOps is back rather than failing (which would make a plan roll
// back a healthy change).
func TestVerifyOutlastsAnOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(nil)
	e.sim.FailNext(15, http.StatusServiceUnavailable, 0)
	cmd := e.publishLine([]byte(`{"id":"verify-outage","type":"proxy.verify","project":"MyProject","params":{"apiProxyName":"PaymentsAPI","environmentNameList":["production"],"timeoutSeconds":1}}`))
	res := e.awaitResults(1, 60*time.Second)[cmd.ID]
	if res == nil || res.Status != messages.StatusSucceeded || len(res.Verification) != 1 || !res.Verification[0].Verified {
		t.Fatalf("result %+v", res)
	}
	failed := 0
	for _, r := range e.sim.Requests() {
		if r.Status == http.StatusServiceUnavailable {
			failed++
		}
	}
	if failed != 15 {
		t.Errorf("%d reads answered 503, want all 15 of the outage", failed)
	}
}
