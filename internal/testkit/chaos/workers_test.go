package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// workerProc is one apiops-worker process, started again after each kill or stop on
// the same proxies, HTTP address and log file.
type workerProc struct {
	t       *testing.T
	n       int
	bin     string
	args    []string
	env     []string
	http    string
	logPath string
	proxies []*proxy

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func newWorkerProc(t *testing.T, n int, bin string, nodes []string, apiURL string, dir string, extraArgs ...string) *workerProc {
	t.Helper()
	w := &workerProc{t: t, n: n, bin: bin, logPath: filepath.Join(dir, fmt.Sprintf("worker-%d.log", n))}
	var urls []string
	for _, node := range nodes {
		p := startProxy(t, node)
		w.proxies = append(w.proxies, p)
		urls = append(urls, "nats://"+p.addr())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.http = ln.Addr().String()
	_ = ln.Close()
	w.args = []string{"--nats-url", strings.Join(urls, ","), "--nats-user", "apiops-worker", "--apiops-url", apiURL, "--replicas", "3",
		"--http-addr", w.http, "--concurrency", "16", "--shutdown-timeout", "5s", "--retry-initial", "100ms", "--retry-max", "2s"}
	w.args = append(w.args, extraArgs...) // the flag given last wins
	w.env = append(os.Environ(), "APIOPS_TOKEN="+apiToken, "NATS_PASSWORD="+workerPassword)
	t.Cleanup(func() { w.kill() })
	return w
}

func (w *workerProc) start() {
	w.t.Helper()
	logFile, err := os.OpenFile(w.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command(w.bin, w.args...)
	cmd.Env = w.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(exited)
	}()
	w.mu.Lock()
	w.cmd, w.exited = cmd, exited
	w.mu.Unlock()
}

func (w *workerProc) running() (*exec.Cmd, chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cmd, w.exited
}

func (w *workerProc) signal(sig syscall.Signal) {
	if cmd, exited := w.running(); cmd != nil && !isDone(exited) {
		_ = cmd.Process.Signal(sig)
	}
}

// kill ends the process at once (SIGKILL) and waits for it.
func (w *workerProc) kill() {
	if cmd, exited := w.running(); cmd != nil {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT) // a frozen process dies too
		_ = cmd.Process.Kill()
		<-exited
	}
}

// stop asks the process to shut down (SIGTERM) and waits for it.
func (w *workerProc) stop() {
	w.t.Helper()
	cmd, exited := w.running()
	if cmd == nil {
		return
	}
	w.signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		w.t.Errorf("worker %d did not stop within 60s after SIGTERM", w.n)
		w.kill()
	}
}

func isDone(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// role asks the worker's /readyz: "active", "standby", or "" when it does not answer
// ready.
func (w *workerProc) role() string {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.http+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return strings.TrimSpace(strings.TrimPrefix(string(body), "ready: "))
}

// instance is the name the worker's current process goes by (its lease holder and
// User-Agent), read from its log; "" before it logged it.
func (w *workerProc) instance() string {
	lines := w.logLines(`"msg":"worker started"`)
	if len(lines) == 0 {
		return ""
	}
	var v struct {
		Instance string `json:"instance"`
	}
	_ = json.Unmarshal([]byte(lines[len(lines)-1]), &v)
	return v.Instance
}

// nonJSONLines returns the lines of the worker's log that are not JSON objects: every
// line the worker writes must go through its logger.
func (w *workerProc) nonJSONLines() []string {
	f, err := os.Open(w.logPath)
	if err != nil {
		return []string{err.Error()}
	}
	defer f.Close()
	var bad []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v map[string]any
		if line := sc.Text(); line != "" && json.Unmarshal([]byte(line), &v) != nil {
			bad = append(bad, line)
		}
	}
	return bad
}

// logLines returns the worker's log lines that contain text.
func (w *workerProc) logLines(text string) []string {
	data, _ := os.ReadFile(w.logPath)
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.Contains(line, text) {
			out = append(out, line)
		}
	}
	return out
}
