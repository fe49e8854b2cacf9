package worker_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/messages"
)

// dialectRow is what a result says about one command, for comparing dialects: its
// status, APIOps's text when it failed, and its environments as name:success.
type dialectRow struct {
	Status       messages.Status
	Message      string
	Environments string
}

// TestEveryDialect runs the worker binary against the simulator in each of APIOps's
// documented dialects: one command of every type, a failure APIOps explains, a
// keystore name APIOps does not know, an mTLS PATCH that deploys, and then, with
// staging failing to deploy, a partial credential change and a partial mTLS deploy.
// Every command must come out the same in every dialect: same status, same APIOps
// text, same environments. The differences are where a dialect's source lacks
// something: openapi.yaml's keystore answers carry no deployment report, and the
// mTLS PATCH of the pages we started from and of openapi.yaml has no deploy (such a
// server saves and ignores it, and the worker reports the missing deployment).
func TestEveryDialect(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the worker binary")
	}
	bin := buildWorker(t)
	type phase struct {
		failEnvironments []string
		commands         [][]byte
	}
	var examples [][]byte
	for _, ct := range messages.Types() {
		examples = append(examples, readExample(t, ct.Name))
	}
	line := func(id, typ, params string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"type":%q,"project":"MyProject","params":%s}`, id, typ, params)
	}
	phases := []phase{
		{commands: append(examples,
			line("missing-truststore", "credential.truststore.set", `{"username":"partner-b","keystoreName":"missing"}`),
			line("unknown-keystore-name", "proxy.mtls.update", `{"apiProxyName":"PaymentsAPI","enabled":true,"keyStoreName":"nope"}`),
			line("mtls-deploy", "proxy.mtls.update", `{"apiProxyName":"PaymentsAPI","trustStoreName":"trust-2026","deploy":true,"deployTargetEnvironmentNameList":["production","staging"]}`),
		)},
		{failEnvironments: []string{"staging"}, commands: [][]byte{
			line("partial-truststore", "credential.truststore.set", `{"username":"partner-b","keystoreName":"trust-2026"}`),
			line("partial-mtls-deploy", "proxy.mtls.update", `{"apiProxyName":"PaymentsAPI","enabled":false,"deploy":true,"deployTargetEnvironmentNameList":["production","staging"]}`),
		}},
	}
	tables := map[simulator.Dialect]map[string]dialectRow{}
	for _, dialect := range simulator.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			e := newEnv(t)
			e.sim.SetDialect(dialect)
			e.startProcess(bin, []string{"APIOPS_TOKEN=sim-token"})
			table := map[string]dialectRow{}
			for _, p := range phases {
				e.sim.SetFaults(simulator.Faults{FailEnvironments: p.failEnvironments})
				for _, l := range p.commands {
					e.publishLine(l)
				}
				for id, r := range e.awaitResults(len(p.commands), 60*time.Second) {
					row := dialectRow{Status: r.Status}
					if r.Error != nil && r.Status == messages.StatusFailed {
						row.Message = r.Error.Message
					}
					if d := r.DeploymentResult; d != nil {
						for _, env := range d.EnvironmentResults {
							row.Environments += fmt.Sprintf("%s:%v ", env.EnvironmentName, env.Success)
						}
					}
					table[id] = row
				}
			}
			tables[dialect] = table
			if p, _ := e.sim.Proxy("MyProject", "MyAPI"); !p.Enabled || p.KeyStoreName != "client-2026" || p.TrustStoreName != "trust-2026" {
				t.Errorf("MyAPI's mTLS = %+v, want enabled with client-2026 and trust-2026", p)
			}
		})
	}
	want := tables[simulator.DialectDocs]
	for _, id := range []string{"missing-truststore", "unknown-keystore-name"} {
		if want[id].Status != messages.StatusFailed || want[id].Message == "" {
			t.Errorf("%s: %+v, want failed with APIOps's text", id, want[id])
		}
	}
	for _, id := range []string{"partial-truststore", "partial-mtls-deploy"} {
		if want[id].Status != messages.StatusPartial || want[id].Environments != "production:true staging:false " {
			t.Errorf("%s: %+v, want partial with staging failed", id, want[id])
		}
	}
	for dialect, table := range tables {
		for id, row := range table {
			expected := want[id]
			noDeploy := dialect == simulator.DialectSeed || dialect == simulator.DialectOpenAPI
			switch {
			case dialect == simulator.DialectOpenAPI && (strings.HasPrefix(id, "example-keystore-") || strings.HasPrefix(id, "example-key-") ||
				strings.HasPrefix(id, "example-certificate-")):
				expected.Environments = "" // ApiOpsResponseKeystore has no deploymentResult
			case noDeploy && strings.HasSuffix(id, "mtls-deploy"):
				expected = dialectRow{Status: messages.StatusPartial} // deploy asked for, none reported
			}
			if row != expected {
				t.Errorf("%s in %s: %+v; in docs: %+v", id, dialect, row, want[id])
			}
		}
		if len(table) != len(want) {
			t.Errorf("%s: %d results, seed %d", dialect, len(table), len(want))
		}
	}
	if t.Failed() {
		out, _ := json.MarshalIndent(tables, "", " ")
		t.Logf("tables:\n%s", out)
	}
}

// TestShortLivedClientCredentialTokens: the worker binary gets its tokens by client
// credentials, tokens live 3 seconds, and commands keep coming for longer than two
// lifetimes: the token is renewed before it runs out, no command fails or is refused,
// and neither the secret nor a token reaches the logs.
func TestShortLivedClientCredentialTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the worker binary")
	}
	bin := buildWorker(t)
	e := newEnv(t)
	e.sim.SetDialect(simulator.DialectMixed)
	e.sim.SetTokenLifetime(3 * time.Second)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("pipeline-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, logs := e.startProcess(bin, []string{"APIOPS_CLIENT_SECRET_FILE=" + secretFile}, "--apiops-client-id", "pipeline")
	const n = 40
	started := time.Now()
	for i, l := range credentialCommands(n, "cc") {
		// Spread over 8 s, so that two tokens expire while commands run.
		time.Sleep(time.Until(started.Add(time.Duration(i) * 200 * time.Millisecond)))
		e.publishLine(l)
	}
	results := e.awaitResults(n, 60*time.Second)
	requireAllSucceeded(t, e, results)
	var published strings.Builder
	for _, r := range results {
		published.Write(r.raw)
	}
	for _, m := range e.deadLetters() {
		fmt.Fprint(&published, m.Headers(), string(m.Data()))
	}
	if issued := e.sim.TokensIssued(); issued < 3 {
		t.Errorf("%d tokens issued over %v of 3-second tokens", issued, time.Since(started))
	}
	for _, r := range e.sim.Requests() {
		if r.Status == http.StatusUnauthorized {
			t.Errorf("a request was refused: %s %s", r.Method, r.Path)
		}
	}
	issuedToken := regexp.MustCompile(`sim\.[0-9]+\.[0-9]+\.`)
	for what, text := range map[string]string{"logs": logs.String(), "results and dead letters": published.String()} {
		if strings.Contains(text, "pipeline-secret") || issuedToken.MatchString(text) {
			t.Errorf("the secret or a token reached the %s:\n%s", what, text)
		}
	}
}

// startProcess runs the worker binary against e's NATS and APIOps with the given
// environment and extra flags.
func (e *env) startProcess(bin string, environ []string, args ...string) (*exec.Cmd, *syncBuffer) {
	e.t.Helper()
	logs := &syncBuffer{}
	cmd := exec.Command(bin, append([]string{"--nats-url", e.nats.ClientURL(), "--apiops-url", e.apiURL, "--http-addr", "",
		"--concurrency", "8", "--retry-initial", "10ms", "--retry-max", "100ms", "--ack-wait", "2s"}, args...)...)
	cmd.Env = append(os.Environ(), environ...)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, logs
}
