// Package bench measures apiops-worker's throughput, latency, CPU and memory against
// the APIOps simulator, next to a baseline: a minimal hand-written loop doing the same
// work with the same delivery guarantees (pull a command, PUT to APIOps, store a result
// awaiting JetStream's ack, acknowledge synchronously).
//
// nats-server (JetStream, every write fsynced) and apiops-sim run as separate
// processes, each run on a fresh data directory, so that every run starts equal and
// the CPU and memory measured in this process are the worker's (or the baseline's)
// alone. cmd/apiops-bench is the command; see Run.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/worker"
)

// Scenario is one setting under which the worker, and optionally the baseline, run.
type Scenario struct {
	Name     string
	InFlight int           // worker Concurrency; baseline goroutines
	Latency  time.Duration // the simulator's added latency per request
	// Backlogs are the commands waiting at the start; the worker runs once per entry,
	// the baseline (when Baseline is set) with the first.
	Backlogs []int
	Baseline bool
	// Limit ends the timed part after this long even if commands are left (0: none).
	Limit time.Duration
	// Fleet, when set, runs the worker once per entry with that many instances sharing
	// the consumer, on the first backlog.
	Fleet []int
}

// Scenarios returns the standard scenarios; quick ones are small, for a smoke run.
func Scenarios(quick bool) []Scenario {
	size := func(full, small int) []int {
		if quick {
			return []int{small}
		}
		return []int{full}
	}
	memory := Scenario{Name: "5", InFlight: 64, Backlogs: []int{2000, 200000}, Limit: 20 * time.Second}
	if quick {
		memory.Backlogs, memory.Limit = []int{200, 5000}, 2*time.Second
	}
	fleet := Scenario{Name: "6", InFlight: 64, Latency: 50 * time.Millisecond, Backlogs: size(5000, 500), Fleet: []int{1, 2, 3}}
	return []Scenario{
		{Name: "1", InFlight: 8, Backlogs: size(20000, 500), Baseline: true},
		{Name: "2", InFlight: 64, Backlogs: size(20000, 500), Baseline: true},
		{Name: "3", InFlight: 64, Latency: 50 * time.Millisecond, Backlogs: size(5000, 500), Baseline: true},
		{Name: "4", InFlight: 256, Latency: 50 * time.Millisecond, Backlogs: size(15000, 1000), Baseline: true},
		memory,
		fleet,
	}
}

// Select returns the scenarios named in a comma-separated list, in list order.
func Select(all []Scenario, names string) ([]Scenario, error) {
	var out []Scenario
	for name := range strings.SplitSeq(names, ",") {
		name = strings.TrimSpace(name)
		i := indexOf(all, name)
		if i < 0 {
			return nil, fmt.Errorf("unknown scenario %q (want 1 to %d)", name, len(all))
		}
		out = append(out, all[i])
	}
	return out, nil
}

func indexOf(all []Scenario, name string) int {
	for i, sc := range all {
		if sc.Name == name {
			return i
		}
	}
	return -1
}

// Scale multiplies every backlog by f (at least one command each).
func Scale(all []Scenario, f float64) []Scenario {
	out := make([]Scenario, len(all))
	for i, sc := range all {
		sc.Backlogs = append([]int(nil), sc.Backlogs...)
		for j, n := range sc.Backlogs {
			sc.Backlogs[j] = max(1, int(float64(n)*f))
		}
		out[i] = sc
	}
	return out
}

// Options configure Run.
type Options struct {
	NATSServer string // the nats-server binary
	Simulator  string // the apiops-sim binary
	Scenarios  []Scenario
	// RunTimeout fails a run whose commands are not done by then; 0 means 5 minutes.
	RunTimeout time.Duration
	// CPUProfile, when set, receives a CPU profile of each run's timed part, the run's
	// name inserted before the extension: cpu.pprof → cpu.1-worker.pprof.
	CPUProfile string
	Out        io.Writer // the table, at the end; nil means standard output
	Progress   io.Writer // what is running, as it runs; may be nil
}

// Measurement is the outcome of one run.
type Measurement struct {
	Scenario  Scenario
	System    string        // "worker" or "baseline"
	Instances int           // worker instances sharing the consumer
	Backlog   int           // commands waiting at the start
	Done      int           // commands finished in the timed part
	Limited   bool          // the timed part ended at Scenario.Limit
	Elapsed   time.Duration // the timed part
	CPU       time.Duration // user + system CPU of this process in the timed part
	PeakHeap  uint64        // bytes in heap objects, sampled every 10 ms
	P50, P99  time.Duration // receipt → result
}

// Rate returns commands per second.
func (m Measurement) Rate() float64 { return Ratio(float64(m.Done), m.Elapsed.Seconds()) }

// CPUPerCommand returns the CPU time per command in microseconds.
func (m Measurement) CPUPerCommand() float64 {
	return Ratio(float64(m.CPU)/float64(time.Microsecond), float64(m.Done))
}

// PeakHeapMiB returns the peak heap in MiB.
func (m Measurement) PeakHeapMiB() float64 { return float64(m.PeakHeap) / (1 << 20) }

// Run runs the scenarios, reporting progress as it goes, and then prints the machine,
// one table row per run and the worker ÷ baseline ratios per scenario.
func Run(ctx context.Context, opts Options) error {
	if !supported {
		return errors.New("the benchmark runs on Linux only")
	}
	if opts.RunTimeout == 0 {
		opts.RunTimeout = 5 * time.Minute
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	tmp, err := os.MkdirTemp("", "apiops-bench-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	most := 0
	for _, sc := range opts.Scenarios {
		for _, n := range sc.Backlogs {
			most = max(most, n)
		}
	}
	seed, err := writeSeed(tmp, most)
	if err != nil {
		return err
	}
	// The table goes out at the end, also after a failure, so that progress on a
	// terminal does not break it up.
	r := &runner{opts: opts, tmp: tmp, seed: seed}
	defer func() { _, _ = io.WriteString(opts.Out, r.table.String()) }()
	r.printMachine()
	r.printHeader()
	for _, sc := range opts.Scenarios {
		var workerRuns, baselineRuns []Measurement
		for _, instances := range sc.Fleet {
			m, err := r.run(ctx, sc, "worker", sc.Backlogs[0], instances)
			if err != nil {
				return err
			}
			workerRuns = append(workerRuns, m)
		}
		if len(sc.Fleet) > 0 {
			r.printFleet(sc, workerRuns)
			continue
		}
		for i, n := range sc.Backlogs {
			m, err := r.run(ctx, sc, "worker", n, 1)
			if err != nil {
				return err
			}
			workerRuns = append(workerRuns, m)
			if sc.Baseline && i == 0 {
				if m, err = r.run(ctx, sc, "baseline", n, 1); err != nil {
					return err
				}
				baselineRuns = append(baselineRuns, m)
			}
		}
		r.printSummary(sc, workerRuns, baselineRuns)
	}
	return nil
}

type runner struct {
	opts  Options
	tmp   string
	seed  string
	table strings.Builder
}

// run starts a fresh nats-server and simulator, publishes the backlog, and measures
// one system taking it.
func (r *runner) run(ctx context.Context, sc Scenario, name string, backlog, instances int) (Measurement, error) {
	label := fmt.Sprintf("scenario %s, %s ×%d, %d in flight, latency %v, %d commands", sc.Name, name, instances, sc.InFlight, sc.Latency, backlog)
	fmt.Fprintf(r.opts.Progress, "running %s\n", label)
	m, err := r.measure(ctx, sc, name, backlog, instances)
	if err != nil {
		return m, fmt.Errorf("%s: %w", label, err)
	}
	r.printRow(m)
	return m, nil
}

func (r *runner) measure(ctx context.Context, sc Scenario, name string, backlog, instances int) (Measurement, error) {
	m := Measurement{Scenario: sc, System: name, Backlog: backlog, Instances: instances}
	dir, err := os.MkdirTemp(r.tmp, "run-")
	if err != nil {
		return m, fmt.Errorf("run directory: %w", err)
	}
	defer os.RemoveAll(dir)
	natsProc, natsURL, err := startNATS(r.opts.NATSServer, dir)
	if err != nil {
		return m, err
	}
	defer natsProc.stop()
	sim, apiURL, err := startSimulator(r.opts.Simulator, dir, r.seed, token, sc.Latency)
	if err != nil {
		return m, err
	}
	defer sim.stop()

	control, err := nats.Connect(natsURL, nats.Name("apiops-bench"))
	if err != nil {
		return m, fmt.Errorf("connect to NATS: %w", err)
	}
	defer control.Close()
	controlJS, err := jetstream.New(control)
	if err != nil {
		return m, fmt.Errorf("jetstream: %w", err)
	}
	var conns []*nats.Conn
	for range instances {
		nc, err := nats.Connect(natsURL, nats.Name("apiops-bench "+name))
		if err != nil {
			return m, fmt.Errorf("connect to NATS: %w", err)
		}
		defer nc.Close()
		conns = append(conns, nc)
	}
	sys, err := newSystem(ctx, name, conns, controlJS, apiURL, sc.InFlight, backlog)
	if err != nil {
		return m, err
	}
	defer sys.stop()

	published := time.Now()
	if err := publishBacklog(ctx, control, backlog); err != nil {
		return m, err
	}
	fmt.Fprintf(r.opts.Progress, "  published %d commands in %v\n", backlog, time.Since(published).Round(time.Millisecond))
	if err := r.timed(ctx, &m, sys, controlJS); err != nil {
		return m, err
	}
	sys.stop()
	lat, err := sys.latencies(ctx)
	if err != nil {
		return m, err
	}
	if len(lat) < m.Done {
		return m, fmt.Errorf("%d commands done but %d latencies recorded", m.Done, len(lat))
	}
	m.P50, m.P99 = Percentile(lat, 50), Percentile(lat, 99)
	return m, nil
}

// newSystem sets up the worker, one instance per connection (with its streams, bucket
// and consumer), or the baseline (with the same streams and consumer) on the first.
func newSystem(ctx context.Context, name string, conns []*nats.Conn, controlJS jetstream.JetStream, apiURL string, inFlight, backlog int) (system, error) {
	switch name {
	case "worker":
		sys := &workerSystem{results: controlJS}
		for _, nc := range conns {
			client, err := apiops.New(apiURL, apiops.StaticToken(token), apiops.WithMaxConnsPerHost(2*inFlight))
			if err != nil {
				return nil, fmt.Errorf("APIOps client: %w", err)
			}
			w, err := worker.New(nc, client, worker.Config{Concurrency: inFlight, ManageStreams: true, Logger: zap.NewNop()})
			if err != nil {
				return nil, fmt.Errorf("worker: %w", err)
			}
			if err := w.Setup(ctx); err != nil {
				return nil, fmt.Errorf("worker setup: %w", err)
			}
			sys.workers = append(sys.workers, w)
		}
		return sys, nil
	case "baseline":
		nc := conns[0]
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		cons, err := createStreams(ctx, js)
		if err != nil {
			return nil, err
		}
		return &baselineSystem{baseline: newBaseline(js, cons, apiURL, inFlight, backlog), inFlight: inFlight}, nil
	}
	return nil, fmt.Errorf("unknown system %q", name)
}

// timed measures from starting sys until the command stream is empty and every
// result is stored (or Scenario.Limit has passed): elapsed time, CPU and peak heap.
func (r *runner) timed(ctx context.Context, m *Measurement, sys system, js jetstream.JetStream) error {
	runtime.GC()
	stopSampling := sampleHeap(10 * time.Millisecond)
	defer func() { m.PeakHeap = stopSampling() }()
	stopProfile, err := r.startProfile(m)
	if err != nil {
		return err
	}
	defer stopProfile()
	cpu0, err := cpuTime()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := sys.start(ctx); err != nil {
		return err
	}
	m.Done, m.Limited, err = r.awaitDone(ctx, sys, js, m.Backlog, m.Scenario.Limit, start)
	m.Elapsed = time.Since(start)
	if err != nil {
		return err
	}
	cpu1, err := cpuTime()
	m.CPU = cpu1 - cpu0
	return err
}

// awaitDone polls the streams every 50 ms until the command stream is empty and
// backlog results are stored, or limit has passed; it returns the results stored.
func (r *runner) awaitDone(ctx context.Context, sys system, js jetstream.JetStream, backlog int, limit time.Duration, start time.Time) (done int, limited bool, err error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
		commands, err := streamMsgs(ctx, js, worker.DefaultCommandStream)
		if err != nil {
			return 0, false, err
		}
		results, err := streamMsgs(ctx, js, worker.DefaultResultStream)
		if err != nil {
			return 0, false, err
		}
		switch elapsed := time.Since(start); {
		case commands == 0 && results >= uint64(backlog):
			return int(results), false, nil
		case limit > 0 && elapsed >= limit:
			return int(results), true, nil
		case elapsed >= r.opts.RunTimeout:
			return 0, false, fmt.Errorf("not done after %v: %d commands waiting, %d results stored", elapsed.Round(time.Second), commands, results)
		}
		if err := sys.failure(); err != nil {
			return 0, false, err
		}
	}
}

// startProfile starts a CPU profile of the timed part when asked for one.
func (r *runner) startProfile(m *Measurement) (stop func(), err error) {
	if r.opts.CPUProfile == "" {
		return func() {}, nil
	}
	name := m.Scenario.Name + "-" + m.System
	if len(m.Scenario.Backlogs) > 1 {
		name += "-" + strconv.Itoa(m.Backlog)
	}
	ext := filepath.Ext(r.opts.CPUProfile)
	path := strings.TrimSuffix(r.opts.CPUProfile, ext) + "." + name + ext
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// sampleHeap samples the bytes in heap objects every interval until the returned
// function is called; that returns the peak.
func sampleHeap(interval time.Duration) (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	peak := read()
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				peak = max(peak, read())
			case <-quit:
				peak = max(peak, read())
				return
			}
		}
	}()
	return func() uint64 {
		close(quit)
		<-done
		return peak
	}
}

// printMachine prints what the numbers were measured on.
func (r *runner) printMachine() {
	natsVersion := "unknown"
	if out, err := exec.Command(r.opts.NATSServer, "--version").Output(); err == nil {
		natsVersion = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server:"))
	}
	fmt.Fprintf(&r.table, "apiops-worker benchmark, %s\n", time.Now().Format(time.DateTime))
	fmt.Fprintf(&r.table, "machine: %d CPUs (GOMAXPROCS %d), %s, %s %s/%s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&r.table, "nats-server %s (own process, JetStream file store, sync_interval: always) and apiops-sim (own process), fresh for every run\n", natsVersion)
	fmt.Fprintf(&r.table, "commands: %s, each on its own credential\n", commandType)
	fmt.Fprintf(&r.table, "cmds/s: from start until the command stream is empty and every result stored; CPU/cmd and heap (peak): this process only\n")
	fmt.Fprintf(&r.table, "p50/p99: receipt → outcome known (worker: result finishedAt − receivedAt, i.e. from admission, queueing included;\n")
	fmt.Fprintf(&r.table, "         baseline: from taking the message to APIOps's answer); storing, publishing and acking come after\n\n")
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(data)) {
		if key, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown CPU"
}

const rowFormat = "%-8s %-16s %9s %7s %9s %9s %9s %9s %10s %8s  %s"

// row adds a line of the table.
func (r *runner) row(cols ...any) {
	fmt.Fprintln(&r.table, strings.TrimRight(fmt.Sprintf(rowFormat, cols...), " "))
}

func (r *runner) printHeader() {
	r.row("scenario", "system", "in-flight", "API lat", "commands", "cmds/s", "p50", "p99", "CPU/cmd µs", "heap MiB", "")
}

func (r *runner) printRow(m Measurement) {
	note := ""
	if m.Limited {
		note = fmt.Sprintf("%d of %d waiting done; timing stopped after %v", m.Done, m.Backlog, m.Elapsed.Round(100*time.Millisecond))
	}
	system := m.System
	if m.Instances > 1 {
		system = fmt.Sprintf("%s ×%d", m.System, m.Instances)
	}
	r.row(m.Scenario.Name, system, strconv.Itoa(m.Scenario.InFlight), m.Scenario.Latency.String(),
		strconv.Itoa(m.Done), fmt.Sprintf("%.0f", m.Rate()), formatMillis(m.P50), formatMillis(m.P99),
		fmt.Sprintf("%.1f", m.CPUPerCommand()), fmt.Sprintf("%.1f", m.PeakHeapMiB()), note)
}

// printFleet prints each fleet's rate as a share of one instance's.
func (r *runner) printFleet(sc Scenario, runs []Measurement) {
	line := fmt.Sprintf("%-8s one instance takes the commands, the others stand by: rate ÷ one instance's:", sc.Name)
	for _, m := range runs {
		line += fmt.Sprintf(" ×%d %s", m.Instances, formatRatio(Ratio(m.Rate(), runs[0].Rate())))
	}
	fmt.Fprintln(&r.table, line)
	fmt.Fprintln(&r.table)
}

// printSummary prints worker ÷ baseline and, with latency, the ratios to the ideal rate.
func (r *runner) printSummary(sc Scenario, workers, baselines []Measurement) {
	if len(workers) > 0 && len(baselines) > 0 {
		w, b := workers[0], baselines[0]
		r.row(sc.Name, "worker÷baseline", "", "", "",
			formatRatio(Ratio(w.Rate(), b.Rate())),
			formatRatio(Ratio(float64(w.P50), float64(b.P50))), formatRatio(Ratio(float64(w.P99), float64(b.P99))),
			formatRatio(Ratio(w.CPUPerCommand(), b.CPUPerCommand())), formatRatio(Ratio(w.PeakHeapMiB(), b.PeakHeapMiB())), "")
	}
	if len(workers) > 1 {
		first, last := workers[0], workers[len(workers)-1]
		fmt.Fprintf(&r.table, "%-8s peak heap with %d waiting ÷ with %d waiting: %s\n", sc.Name, last.Backlog, first.Backlog,
			formatRatio(Ratio(last.PeakHeapMiB(), first.PeakHeapMiB())))
	}
	if sc.Latency > 0 && len(workers) > 0 {
		ideal := float64(sc.InFlight) / sc.Latency.Seconds()
		line := fmt.Sprintf("%-8s ideal rate in-flight ÷ latency = %.0f/s: worker %s", sc.Name, ideal, formatRatio(Ratio(workers[0].Rate(), ideal)))
		if len(baselines) > 0 {
			line += ", baseline " + formatRatio(Ratio(baselines[0].Rate(), ideal))
		}
		fmt.Fprintln(&r.table, line)
	}
	fmt.Fprintln(&r.table)
}
