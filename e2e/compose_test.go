package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"

	"github.com/apiops-worker/apiops-worker/internal/programs/ctl"
)

// composeCommand finds Compose: the docker-compose program or the docker compose plugin.
func composeCommand(t *testing.T) []string {
	if path, err := exec.LookPath("docker-compose"); err == nil {
		return []string{path}
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	t.Skip("no docker-compose and no docker compose plugin on this machine")
	return nil
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// TestComposeStack brings up docker-compose.yml as the README says, submits the
// rotation scenario with apiopsctl and reads the worker's metrics.
func TestComposeStack(t *testing.T) {
	testcontainers.SkipIfProviderIsNotHealthy(t)
	compose := composeCommand(t)
	natsPort, httpPort := freePort(t), freePort(t)
	project := fmt.Sprintf("apiopse2e%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(compose[0], append(append(compose[1:], "-f", "../docker-compose.yml", "-p", project), args...)...)
		cmd.Env = append(os.Environ(), "NATS_IMAGE="+natsImage, "APIOPS_WORKER_IMAGE="+workerImage,
			"NATS_PORT="+natsPort, "WORKER_HTTP_PORT="+httpPort)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
	}
	t.Cleanup(func() { run("down", "-v", "--remove-orphans") })
	run("up", "-d")

	get := func(path string) (int, string) {
		resp, err := http.Get("http://127.0.0.1:" + httpPort + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if code, _ := get("/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			_, body := get("/readyz")
			t.Fatalf("the worker did not become ready: %s", body)
		}
	}

	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := ctl.Submit(ctx, []string{"--sequential", "--nats-url", "nats://127.0.0.1:" + natsPort, "../testdata/rotation.jsonl"},
		ctl.IO{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
	if code != 0 || !strings.Contains(stdout.String(), "11 commands: 11 succeeded") {
		t.Fatalf("submit: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	_, metrics := get("/metrics")
	if !strings.Contains(metrics, `apiops_worker_commands_finished_total{status="succeeded",type="keystore.create"} 1`) {
		t.Errorf("metrics do not show the run:\n%s", metrics)
	}
}
