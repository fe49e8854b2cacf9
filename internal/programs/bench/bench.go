// Package bench measures apiops-worker's throughput, latency, CPU and memory against
// the APIOps simulator, next to a baseline: a minimal loop doing the same work with the
// same delivery guarantee (pull a command, PUT to APIOps, store a result awaiting
// JetStream's ack, acknowledge synchronously).
//
// Every part runs in its own process, fresh for each run: nats-server, apiops-sim, and
// the system measured, the real apiops-worker binary or the baseline
// (`apiops-bench loop`). So the CPU per command of each process, and the system's
// memory, are its own. The worker and the baseline run interleaved, several times,
// and the table shows medians. cmd/apiops-bench is the command; see Run.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/internal/testkit/otlpsink"
	"github.com/apiops-worker/apiops-worker/worker"
)

// Scenario is one setting under which the worker, and optionally the baseline, run.
type Scenario struct {
	Name     string
	InFlight int           // worker --concurrency; baseline goroutines
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
	// Tracing compares the worker with tracing off to the worker exporting every span
	// over OTLP/HTTP to a collector that discards them (and to Options.Against, when
	// set), interleaved, instead of the worker to the baseline.
	Tracing bool
}

// Systems measured besides the worker and the baseline.
const (
	// tracedWorker is the worker with OTEL_EXPORTER_OTLP_ENDPOINT set: every span made
	// and exported.
	tracedWorker = "worker+tracing"
	// againstWorker is Options.Against, another build of the worker.
	againstWorker = "against"
)

// systems are the systems a scenario compares, the worker first.
func (sc Scenario) systems(against string) []string {
	switch {
	case sc.Tracing && against != "":
		return []string{"worker", tracedWorker, againstWorker}
	case sc.Tracing:
		return []string{"worker", tracedWorker}
	case sc.Baseline && against != "":
		return []string{"worker", "baseline", againstWorker}
	case sc.Baseline:
		return []string{"worker", "baseline"}
	}
	return []string{"worker"}
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
	tracing := Scenario{Name: "7", InFlight: 64, Backlogs: size(20000, 500), Tracing: true}
	return []Scenario{
		{Name: "1", InFlight: 8, Backlogs: size(10000, 500), Baseline: true},
		{Name: "2", InFlight: 64, Backlogs: size(20000, 500), Baseline: true},
		{Name: "3", InFlight: 64, Latency: 50 * time.Millisecond, Backlogs: size(6000, 500), Baseline: true},
		{Name: "4", InFlight: 256, Latency: 50 * time.Millisecond, Backlogs: size(15000, 1000), Baseline: true},
		memory,
		fleet,
		tracing,
	}
}

// Select returns the scenarios named in a comma-separated list, in list order.
func Select(all []Scenario, names string) ([]Scenario, error) {
	var out []Scenario
	for name := range strings.SplitSeq(names, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(all, func(sc Scenario) bool { return sc.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("unknown scenario %q (want 1 to %d)", name, len(all))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// Scale multiplies every backlog by f (at least one command each).
func Scale(all []Scenario, f float64) []Scenario {
	out := make([]Scenario, len(all))
	for i, sc := range all {
		sc.Backlogs = slices.Clone(sc.Backlogs)
		for j, n := range sc.Backlogs {
			sc.Backlogs[j] = max(1, int(float64(n)*f))
		}
		out[i] = sc
	}
	return out
}

// Sync is a nats-server durability setting.
type Sync string

const (
	// SyncDefault is nats-server's default: writes reach the disk within its sync
	// interval (two minutes), so a machine that loses power may lose the last ones.
	SyncDefault Sync = "default"
	// SyncAlways fsyncs every write before JetStream acknowledges it.
	SyncAlways Sync = "always"
)

// Options configure Run.
type Options struct {
	NATSServer string // the nats-server binary
	Simulator  string // the apiops-sim binary
	Worker     string // the apiops-worker binary
	Self       string // this binary, for `apiops-bench loop`
	Scenarios  []Scenario
	// Syncs are the durability settings scenarios with a baseline run under; the
	// others run under the first.
	Syncs []Sync
	// Repeat runs each measurement this many times, worker and baseline interleaved,
	// and reports the medians; 0 means 1.
	Repeat int
	// RunTimeout fails a run whose commands are not done by then; 0 means 5 minutes.
	RunTimeout time.Duration
	// ProfileDir, when set, receives CPU and allocation profiles of the worker in
	// ProfileScenario's runs.
	ProfileDir      string
	ProfileScenario string
	// Against, when set, is another worker binary that the baseline and tracing
	// scenarios also run, interleaved with the others: a build from before a change,
	// so that worker ÷ against is the change's cost, measured in one invocation.
	Against  string
	Out      io.Writer // the table, at the end; nil means standard output
	Progress io.Writer // what is running, as it runs; may be nil
}

// Measurement is the outcome of one run.
type Measurement struct {
	Scenario  Scenario
	Sync      Sync
	System    string // "worker" or "baseline"
	Instances int    // worker instances sharing the consumer
	Backlog   int    // commands waiting at the start
	Done      int    // commands finished in the timed part
	Limited   bool   // the timed part ended at Scenario.Limit
	// Span is from the first command's receipt to the last result's finish, as the
	// results say: start-up is outside it, for either system.
	Span time.Duration
	// CPU of the system's processes, of nats-server and of the simulator while the
	// system ran.
	CPU, NATSCPU, SimCPU time.Duration
	PeakRSS              uint64        // the system's largest peak resident memory
	P50, P99             time.Duration // receipt → result
	Spans                int           // spans the traced worker exported
}

// Rate returns commands per second.
func (m Measurement) Rate() float64 { return Ratio(float64(m.Done), m.Span.Seconds()) }

func perCommand(d time.Duration, n int) float64 {
	return Ratio(float64(d)/float64(time.Microsecond), float64(n))
}

// Run runs the scenarios, reporting progress as it goes, and then prints the machine,
// one table row per system (medians of the repeats) and the worker ÷ baseline ratios.
func Run(ctx context.Context, opts Options) error {
	if !supported {
		return errors.New("the benchmark runs on Linux only")
	}
	if opts.RunTimeout == 0 {
		opts.RunTimeout = 5 * time.Minute
	}
	if opts.Repeat == 0 {
		opts.Repeat = 1
	}
	if len(opts.Syncs) == 0 {
		opts.Syncs = []Sync{SyncAlways}
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
		most = max(most, slices.Max(sc.Backlogs))
	}
	seed, err := writeSeed(tmp, most)
	if err != nil {
		return err
	}
	// The table goes out at the end, also after a failure, so that progress on a
	// terminal does not break it up.
	r := &runner{opts: opts, tmp: tmp, seed: seed}
	if slices.ContainsFunc(opts.Scenarios, func(sc Scenario) bool { return sc.Tracing }) {
		r.spans = otlpsink.New()
		r.spans.Discard = true // a collector that costs the worker nothing but the export
		endpoint, stop, err := r.spans.ListenHTTP()
		if err != nil {
			return fmt.Errorf("OTLP collector: %w", err)
		}
		defer stop()
		r.spansEndpoint = endpoint
	}
	defer func() { _, _ = io.WriteString(opts.Out, r.table.String()) }()
	r.printMachine()
	r.printHeader()
	for _, sc := range opts.Scenarios {
		syncs := opts.Syncs[:1]
		if sc.Baseline {
			syncs = opts.Syncs
		}
		for _, sync := range syncs {
			if err := r.scenario(ctx, sc, sync); err != nil {
				return err
			}
		}
	}
	return nil
}

type runner struct {
	opts  Options
	tmp   string
	seed  string
	table strings.Builder
	// spans receives the traced worker's spans at spansEndpoint.
	spans         *otlpsink.Sink
	spansEndpoint string
}

// scenario measures one scenario under one durability setting.
func (r *runner) scenario(ctx context.Context, sc Scenario, sync Sync) error {
	if len(sc.Fleet) > 0 {
		var runs []Measurement
		for _, instances := range sc.Fleet {
			m, err := r.repeated(ctx, sc, sync, "worker", sc.Backlogs[0], instances)
			if err != nil {
				return err
			}
			runs = append(runs, m)
		}
		r.printFleet(sc, runs)
		return nil
	}
	// The first backlog: the systems interleaved, each repeat in another order.
	systems := sc.systems(r.opts.Against)
	runs := make(map[string][]Measurement)
	for i := range r.opts.Repeat {
		for j := range systems {
			name := systems[(i+j)%len(systems)]
			m, err := r.run(ctx, sc, sync, name, sc.Backlogs[0], 1, i)
			if err != nil {
				return err
			}
			runs[name] = append(runs[name], m)
		}
	}
	medians := make(map[string]Measurement)
	for _, name := range systems {
		medians[name] = median(runs[name])
		r.printRow(medians[name])
	}
	if sc.Tracing {
		r.printTracing(sc, sync, medians)
		return nil
	}
	workers := []Measurement{medians["worker"]}
	var base, against *Measurement
	if m, ok := medians["baseline"]; ok {
		base = &m
	}
	if m, ok := medians[againstWorker]; ok {
		against = &m
	}
	for _, n := range sc.Backlogs[1:] {
		m, err := r.repeated(ctx, sc, sync, "worker", n, 1)
		if err != nil {
			return err
		}
		workers = append(workers, m)
	}
	r.printSummary(sc, sync, workers, base, against)
	return nil
}

// repeated runs one system Repeat times and returns the medians.
func (r *runner) repeated(ctx context.Context, sc Scenario, sync Sync, name string, backlog, instances int) (Measurement, error) {
	var ms []Measurement
	for i := range r.opts.Repeat {
		m, err := r.run(ctx, sc, sync, name, backlog, instances, i)
		if err != nil {
			return m, err
		}
		ms = append(ms, m)
	}
	m := median(ms)
	r.printRow(m)
	return m, nil
}

// run measures one run and reports its figures as progress.
func (r *runner) run(ctx context.Context, sc Scenario, sync Sync, name string, backlog, instances, attempt int) (Measurement, error) {
	label := fmt.Sprintf("scenario %s, sync %s, %s ×%d, %d in flight, latency %v, %d commands, run %d",
		sc.Name, sync, name, instances, sc.InFlight, sc.Latency, backlog, attempt+1)
	fmt.Fprintf(r.opts.Progress, "running %s\n", label)
	m, err := r.measure(ctx, sc, sync, name, backlog, instances, attempt)
	if err != nil {
		return m, fmt.Errorf("%s: %w", label, err)
	}
	fmt.Fprintf(r.opts.Progress, "  %.0f cmds/s, CPU/cmd %.0f µs (+ nats %.0f, sim %.0f), peak RSS %.1f MiB\n", m.Rate(),
		perCommand(m.CPU, m.Done), perCommand(m.NATSCPU, m.Done), perCommand(m.SimCPU, m.Done), float64(m.PeakRSS)/(1<<20))
	return m, nil
}

func (r *runner) measure(ctx context.Context, sc Scenario, sync Sync, name string, backlog, instances, attempt int) (Measurement, error) {
	m := Measurement{Scenario: sc, Sync: sync, System: name, Backlog: backlog, Instances: instances}
	dir, err := os.MkdirTemp(r.tmp, "run-")
	if err != nil {
		return m, fmt.Errorf("run directory: %w", err)
	}
	defer os.RemoveAll(dir)
	natsProc, natsURL, err := startNATS(r.opts.NATSServer, dir, sync)
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
	js, err := jetstream.New(control)
	if err != nil {
		return m, fmt.Errorf("jetstream: %w", err)
	}
	// The streams, bucket and consumer exactly as the worker sets them up, for both.
	setup, err := worker.New(control, nil, worker.Config{ManageStreams: true, Concurrency: sc.InFlight})
	if err != nil {
		return m, err
	}
	if err := setup.Setup(ctx); err != nil {
		return m, fmt.Errorf("set up the streams: %w", err)
	}
	published := time.Now()
	if err := publishBacklog(ctx, control, backlog); err != nil {
		return m, err
	}
	fmt.Fprintf(r.opts.Progress, "  published %d commands in %v\n", backlog, time.Since(published).Round(time.Millisecond))

	natsCPU0, err := procCPU(natsProc.cmd.Process.Pid)
	if err != nil {
		return m, err
	}
	simCPU0, err := procCPU(sim.cmd.Process.Pid)
	if err != nil {
		return m, err
	}
	profile := r.opts.ProfileDir != "" && sc.Name == r.opts.ProfileScenario && name == "worker"
	spansBefore := 0
	if r.spans != nil {
		spansBefore = r.spans.Count()
	}
	sys, err := startSystem(r.opts, name, dir, natsURL, apiURL, r.spansEndpoint, sc.InFlight, instances, profile)
	if err != nil {
		return m, err
	}
	defer sys.stop()
	profiled := make(chan error, 1)
	if profile {
		go func() {
			time.Sleep(time.Second) // past start-up
			profiled <- sys.profile(ctx, r.opts.ProfileDir, fmt.Sprintf("%s-%s-run%d", sc.Name, sync, attempt+1), 5*time.Second)
		}()
	}
	if m.Limited, err = r.awaitDone(ctx, sys, js, backlog, sc.Limit); err != nil {
		return m, err
	}
	if m.CPU, m.PeakRSS, err = sys.usage(); err != nil {
		return m, err
	}
	natsCPU1, err := procCPU(natsProc.cmd.Process.Pid)
	if err != nil {
		return m, err
	}
	simCPU1, err := procCPU(sim.cmd.Process.Pid)
	if err != nil {
		return m, err
	}
	m.NATSCPU, m.SimCPU = natsCPU1-natsCPU0, simCPU1-simCPU0
	if profile {
		if err := <-profiled; err != nil {
			return m, err
		}
	}
	sys.stop()
	res, err := readResults(ctx, js)
	if err != nil {
		return m, err
	}
	m.Done, m.Span = len(res.latencies), res.span
	if name == tracedWorker {
		// The spans are batched: the last ones leave at the worker's shutdown, above.
		if m.Spans = r.spans.Count() - spansBefore; m.Spans < m.Done {
			return m, fmt.Errorf("%d spans reached the collector for %d commands: is tracing on?", m.Spans, m.Done)
		}
	}
	m.P50, m.P99 = Percentile(res.latencies, 50), Percentile(res.latencies, 99)
	return m, nil
}

// awaitDone polls the streams every 50 ms until the command stream is empty and
// backlog results are stored, or limit has passed.
func (r *runner) awaitDone(ctx context.Context, sys *system, js jetstream.JetStream, backlog int, limit time.Duration) (limited bool, err error) {
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		commands, err := streamMsgs(ctx, js, worker.DefaultCommandStream)
		if err != nil {
			return false, err
		}
		results, err := streamMsgs(ctx, js, worker.DefaultResultStream)
		if err != nil {
			return false, err
		}
		switch elapsed := time.Since(start); {
		case commands == 0 && results >= uint64(backlog):
			return false, nil
		case limit > 0 && elapsed >= limit:
			return true, nil
		case elapsed >= r.opts.RunTimeout:
			return false, fmt.Errorf("not done after %v: %d commands waiting, %d results stored", elapsed.Round(time.Second), commands, results)
		}
		if err := sys.failure(); err != nil {
			return false, err
		}
	}
}

// median returns a measurement of each figure's median over runs.
func median(runs []Measurement) Measurement {
	m := runs[0]
	mid := func(get func(Measurement) float64) float64 {
		vs := make([]float64, len(runs))
		for i, r := range runs {
			vs[i] = get(r)
		}
		slices.Sort(vs)
		return vs[len(vs)/2]
	}
	// Done and Span keep their ratio: the run with the median rate gives both.
	rate := mid(Measurement.Rate)
	for _, r := range runs {
		if r.Rate() == rate || math.IsNaN(rate) {
			m.Done, m.Span, m.Limited = r.Done, r.Span, r.Limited
			break
		}
	}
	perCmd := func(get func(Measurement) time.Duration) time.Duration {
		us := mid(func(r Measurement) float64 { return perCommand(get(r), r.Done) })
		return time.Duration(us * float64(m.Done) * float64(time.Microsecond))
	}
	m.CPU = perCmd(func(r Measurement) time.Duration { return r.CPU })
	m.NATSCPU = perCmd(func(r Measurement) time.Duration { return r.NATSCPU })
	m.SimCPU = perCmd(func(r Measurement) time.Duration { return r.SimCPU })
	m.PeakRSS = uint64(mid(func(r Measurement) float64 { return float64(r.PeakRSS) }))
	m.P50 = time.Duration(mid(func(r Measurement) float64 { return float64(r.P50) }))
	m.P99 = time.Duration(mid(func(r Measurement) float64 { return float64(r.P99) }))
	return m
}

// printMachine prints what the numbers were measured on.
func (r *runner) printMachine() {
	natsVersion := "unknown"
	if out, err := exec.Command(r.opts.NATSServer, "--version").Output(); err == nil {
		natsVersion = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server:"))
	}
	fmt.Fprintf(&r.table, "apiops-worker benchmark, %s\n", time.Now().Format(time.DateTime))
	fmt.Fprintf(&r.table, "machine: %d CPUs, %s, %s %s/%s\n", runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&r.table, "nats-server %s, apiops-sim and the system measured (apiops-worker, or the baseline loop) each in its own process, fresh for every run\n", natsVersion)
	fmt.Fprintf(&r.table, "sync: nats-server's sync_interval, default (writes reach the disk within 2 min) or always (every write fsynced before its ack)\n")
	fmt.Fprintf(&r.table, "commands: %s, each on its own credential; medians of %d run(s), worker and baseline interleaved\n", commandType, r.opts.Repeat)
	fmt.Fprintf(&r.table, "cmds/s: results ÷ (last result's finish − first command's receipt); CPU/cmd: the system's own process(es), then nats-server and apiops-sim\n")
	fmt.Fprintf(&r.table, "p50/p99: a command's receipt → its outcome known; RSS: the system's peak resident memory\n\n")
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

const rowFormat = "%-8s %-7s %-16s %9s %7s %9s %9s %9s %9s %12s %6s %6s %8s  %s"

// row adds a line of the table.
func (r *runner) row(cols ...any) {
	fmt.Fprintln(&r.table, strings.TrimRight(fmt.Sprintf(rowFormat, cols...), " "))
}

func (r *runner) printHeader() {
	r.row("scenario", "sync", "system", "in-flight", "API lat", "commands", "cmds/s", "p50", "p99", "CPU/cmd µs", "nats", "sim", "RSS MiB", "")
}

func (r *runner) printRow(m Measurement) {
	system := m.System
	if m.Instances > 1 {
		system = fmt.Sprintf("%s ×%d", m.System, m.Instances)
	}
	note := ""
	if m.Limited {
		note = fmt.Sprintf("%d of %d waiting done when timing stopped", m.Done, m.Backlog)
	}
	r.row(m.Scenario.Name, string(m.Sync), system, strconv.Itoa(m.Scenario.InFlight), m.Scenario.Latency.String(),
		strconv.Itoa(m.Done), fmt.Sprintf("%.0f", m.Rate()), formatMillis(m.P50), formatMillis(m.P99),
		fmt.Sprintf("%.0f", perCommand(m.CPU, m.Done)), fmt.Sprintf("%.0f", perCommand(m.NATSCPU, m.Done)),
		fmt.Sprintf("%.0f", perCommand(m.SimCPU, m.Done)), fmt.Sprintf("%.1f", float64(m.PeakRSS)/(1<<20)), note)
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

// ratios prints a row of a's figures divided by b's.
func (r *runner) ratios(sc Scenario, sync Sync, label string, a, b Measurement) {
	r.row(sc.Name, string(sync), label, "", "", "", formatRatio(Ratio(a.Rate(), b.Rate())),
		formatRatio(Ratio(float64(a.P50), float64(b.P50))), formatRatio(Ratio(float64(a.P99), float64(b.P99))),
		formatRatio(Ratio(perCommand(a.CPU, a.Done), perCommand(b.CPU, b.Done))), "", "",
		formatRatio(Ratio(float64(a.PeakRSS), float64(b.PeakRSS))), "")
}

// printTracing prints what tracing costs: the traced worker ÷ the worker, and the
// worker ÷ the build it is compared against.
func (r *runner) printTracing(sc Scenario, sync Sync, medians map[string]Measurement) {
	off, on := medians["worker"], medians[tracedWorker]
	r.ratios(sc, sync, "traced÷worker", on, off)
	if m, ok := medians[againstWorker]; ok {
		r.ratios(sc, sync, "worker÷against", off, m)
	}
	fmt.Fprintf(&r.table, "%-8s the traced worker exported %.1f spans per command over OTLP/HTTP to a collector that discards them (the SDK's defaults: every trace sampled, batches of 512)\n",
		sc.Name, Ratio(float64(on.Spans), float64(on.Done)))
	fmt.Fprintln(&r.table)
}

// printSummary prints worker ÷ baseline, worker ÷ the build it is compared against, the
// peak memory with a large backlog ÷ with a small one, and, with latency, the worker's
// rate ÷ the ideal rate.
func (r *runner) printSummary(sc Scenario, sync Sync, workers []Measurement, base, against *Measurement) {
	if base != nil {
		r.ratios(sc, sync, "worker÷baseline", workers[0], *base)
	}
	if against != nil {
		r.ratios(sc, sync, "worker÷against", workers[0], *against)
	}
	if len(workers) > 1 {
		first, last := workers[0], workers[len(workers)-1]
		fmt.Fprintf(&r.table, "%-8s peak RSS with %d waiting ÷ with %d waiting: %s\n", sc.Name, last.Backlog, first.Backlog,
			formatRatio(Ratio(float64(last.PeakRSS), float64(first.PeakRSS))))
	}
	if sc.Latency > 0 {
		ideal := float64(sc.InFlight) / sc.Latency.Seconds()
		fmt.Fprintf(&r.table, "%-8s ideal rate in-flight ÷ latency = %.0f/s: worker %s\n", sc.Name, ideal, formatRatio(Ratio(workers[0].Rate(), ideal)))
	}
	fmt.Fprintln(&r.table)
}
