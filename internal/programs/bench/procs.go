package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// startTimeout bounds how long a server may take to be ready.
const startTimeout = 15 * time.Second

// process is a child process writing its output to a log file. stop ends it; the
// kernel also kills it if the benchmark dies (killWithParent).
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // why it exited; read after done
}

// startProcess starts cmd with its stdout and stderr in dir/<name>.log.
func startProcess(name, dir string, cmd *exec.Cmd) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	killWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// stop asks the process to end (SIGTERM), kills it after 5 seconds, and waits for it.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// awaitLog waits until the process's log matches ready, then returns the first
// submatch of find in the log.
func (p *process) awaitLog(ready, find *regexp.Regexp) (string, error) {
	deadline := time.After(startTimeout)
	for {
		data, err := os.ReadFile(p.logPath)
		if err != nil {
			return "", fmt.Errorf("%s log: %w", p.name, err)
		}
		if ready.Match(data) {
			if m := find.FindSubmatch(data); m != nil {
				return string(m[1]), nil
			}
			return "", fmt.Errorf("%s is ready but its log has no %q:\n%s", p.name, find, tail(data))
		}
		select {
		case <-p.done:
			return "", fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, tail(data))
		case <-deadline:
			return "", fmt.Errorf("%s not ready after %v:\n%s", p.name, startTimeout, tail(data))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tail returns the last lines of a log, for error messages.
func tail(data []byte) string {
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-10):], []byte("\n")))
}

var (
	natsReady   = regexp.MustCompile(`Server is ready`)
	natsAddress = regexp.MustCompile(`Listening for client connections on (\S+)`)
	simAddress  = regexp.MustCompile(`serving APIOps on (http://\S+)`)
)

// startNATS starts nats-server on a free loopback port with JetStream storing in
// dir/jetstream under the durability setting, and returns it with its client URL.
func startNATS(binary, dir string, sync Sync) (*process, string, error) {
	syncLine := ""
	if sync == SyncAlways {
		syncLine = "  sync_interval: always\n"
	}
	conf := fmt.Sprintf("host: 127.0.0.1\nport: -1\njetstream {\n  store_dir: %q\n%s}\n", filepath.Join(dir, "jetstream"), syncLine)
	confPath := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, "", fmt.Errorf("nats-server config: %w", err)
	}
	p, err := startProcess("nats-server", dir, exec.Command(binary, "-c", confPath))
	if err != nil {
		return nil, "", err
	}
	addr, err := p.awaitLog(natsReady, natsAddress)
	if err != nil {
		p.stop()
		return nil, "", err
	}
	return p, "nats://" + addr, nil
}

// startSimulator starts apiops-sim on a free loopback port with the given seed,
// token and latency, and returns it with its base URL.
func startSimulator(binary, dir, seedPath, token string, latency time.Duration) (*process, string, error) {
	cmd := exec.Command(binary, "--addr", "127.0.0.1:0", "--seed", seedPath, "--latency", latency.String())
	// APIOPS_SIM_* variables would inject faults the benchmark does not ask for.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "APIOPS_SIM_") && !strings.HasPrefix(kv, "APIOPS_TOKEN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "APIOPS_TOKEN="+token)
	p, err := startProcess("apiops-sim", dir, cmd)
	if err != nil {
		return nil, "", err
	}
	url, err := p.awaitLog(simAddress, simAddress)
	if err != nil {
		p.stop()
		return nil, "", err
	}
	return p, url, nil
}
