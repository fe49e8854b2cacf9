package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// system is what a run measures: worker processes (one per instance) or the baseline's
// process, each with its own CPU and memory.
type system struct {
	procs []*process
	http  []string // the workers' metrics addresses
}

// startSystem starts the worker (instances processes sharing the consumer) or the
// baseline against NATS and APIOps.
func startSystem(opts Options, name, dir, natsURL, apiURL, spansEndpoint string, inFlight, instances int, profile bool) (*system, error) {
	sys := &system{}
	for i := range instances {
		var cmd *exec.Cmd
		switch name {
		case "worker", tracedWorker, againstWorker:
			addr, err := freeAddr()
			if err != nil {
				return nil, err
			}
			args := []string{"--nats-url", natsURL, "--apiops-url", apiURL, "--concurrency", strconv.Itoa(inFlight),
				"--http-addr", addr, "--log-format", "json"}
			if profile {
				args = append(args, "--pprof")
			}
			binary := opts.Worker
			if name == againstWorker {
				binary = opts.Against
			}
			cmd = exec.Command(binary, args...)
			cmd.Env = append(environWithoutOTEL(), "APIOPS_TOKEN="+token)
			if name == tracedWorker {
				cmd.Env = append(cmd.Env, "OTEL_EXPORTER_OTLP_ENDPOINT="+spansEndpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
			}
			sys.http = append(sys.http, addr)
		case "baseline":
			cmd = exec.Command(opts.Self, "loop", "--nats-url", natsURL, "--apiops-url", apiURL, "--in-flight", strconv.Itoa(inFlight))
		default:
			return nil, fmt.Errorf("unknown system %q", name)
		}
		p, err := startProcess(fmt.Sprintf("%s-%d", name, i), dir, cmd)
		if err != nil {
			sys.stop()
			return nil, err
		}
		sys.procs = append(sys.procs, p)
	}
	return sys, nil
}

// environWithoutOTEL is this process's environment less OpenTelemetry's variables,
// which would turn tracing on in a worker measured with it off.
func environWithoutOTEL() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}

// failure returns why the system cannot finish the run, or nil.
func (s *system) failure() error {
	for _, p := range s.procs {
		select {
		case <-p.done:
			data, _ := os.ReadFile(p.logPath)
			return fmt.Errorf("%s exited during the run (%v):\n%s", p.name, p.err, tail(data))
		default:
		}
	}
	return nil
}

// usage returns the CPU the system's processes have used and the largest peak RSS.
func (s *system) usage() (cpu time.Duration, peakRSS uint64, err error) {
	for _, p := range s.procs {
		c, err := procCPU(p.cmd.Process.Pid)
		if err != nil {
			return 0, 0, err
		}
		m, err := procPeakRSS(p.cmd.Process.Pid)
		if err != nil {
			return 0, 0, err
		}
		cpu, peakRSS = cpu+c, max(peakRSS, m)
	}
	return cpu, peakRSS, nil
}

func (s *system) stop() {
	for _, p := range s.procs {
		p.stop()
	}
}

// profile saves a CPU profile of the first worker over d, then its allocations so far,
// into dir as <name>.cpu.pprof and <name>.allocs.pprof.
func (s *system) profile(ctx context.Context, dir, name string, d time.Duration) error {
	if len(s.http) == 0 {
		return nil
	}
	base := "http://" + s.http[0] + "/debug/pprof/"
	for _, p := range []struct{ path, file string }{
		{"profile?seconds=" + strconv.Itoa(int(d.Seconds())), name + ".cpu.pprof"},
		{"allocs", name + ".allocs.pprof"},
	} {
		if err := fetch(ctx, base+p.path, filepath.Join(dir, p.file)); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	return nil
}

func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
