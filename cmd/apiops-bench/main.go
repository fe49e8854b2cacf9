// Command apiops-bench measures apiops-worker's throughput, latency, CPU and memory
// against the APIOps simulator, next to a minimal baseline loop, and prints a table.
// nats-server, apiops-sim, apiops-worker and the baseline each run in their own
// process (build them first; `make bench` does). See package internal/programs/bench.
//
//	apiops-bench [--quick] [--scenarios 1,2,3,4,5,6,7] [--against BINARY] [--sync default,always] [--repeat 3]
//	             [--scale 0.5] [--profile DIR]
//	apiops-bench loop ...   (the baseline's process; started by the benchmark)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/apiops-worker/apiops-worker/internal/programs/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "loop" {
		if err := bench.RunLoop(ctx, os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "apiops-bench loop:", err)
			os.Exit(1)
		}
		return
	}
	natsServer := flag.String("nats-server", "bin/nats-server", "nats-server binary")
	sim := flag.String("sim", "bin/apiops-sim", "apiops-sim binary")
	worker := flag.String("worker", "bin/apiops-worker", "apiops-worker binary")
	quick := flag.Bool("quick", false, "small sizes, one run each: a smoke run that checks the harness")
	scenarios := flag.String("scenarios", "1,2,3,4,5,6,7", "comma-separated scenarios to run:\n"+
		"1: latency 0, 8 in flight; 2: latency 0, 64 in flight; 3: latency 50ms, 64 in flight;\n"+
		"4: latency 50ms, 256 in flight; 5: memory with a small and a large backlog (worker only);\n"+
		"6: latency 50ms, 64 in flight, taken by fleets of 1, 2 and 3 instances (worker only);\n"+
		"7: latency 0, 64 in flight, tracing off and exporting every span over OTLP (worker only)")
	syncs := flag.String("sync", "default,always", "nats-server durability settings for scenarios 1-4: default, always")
	repeat := flag.Int("repeat", 3, "runs per measurement, worker and baseline interleaved; the table shows medians")
	scale := flag.Float64("scale", 1, "multiply every scenario's number of commands")
	limit := flag.Duration("limit", 0, "stop timing scenario 5's runs after this long (default 20s, 2s with --quick)")
	timeout := flag.Duration("timeout", 5*time.Minute, "fail a run that is not done by then")
	profile := flag.String("profile", "", "write CPU and allocation profiles of the worker in --profile-scenario's runs into this directory")
	profileScenario := flag.String("profile-scenario", "2", "the scenario --profile profiles")
	against := flag.String("against", "", "another apiops-worker binary that scenarios 1-4 and 7 run too, interleaved, e.g. a build from before a change")
	flag.Parse()

	all := bench.Scale(bench.Scenarios(*quick), *scale)
	if *limit > 0 {
		for i := range all {
			if all[i].Limit > 0 {
				all[i].Limit = *limit
			}
		}
	}
	selected, err := bench.Select(all, *scenarios)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apiops-bench:", err)
		os.Exit(2)
	}
	var modes []bench.Sync
	for s := range strings.SplitSeq(*syncs, ",") {
		switch m := bench.Sync(strings.TrimSpace(s)); m {
		case bench.SyncDefault, bench.SyncAlways:
			modes = append(modes, m)
		default:
			fmt.Fprintf(os.Stderr, "apiops-bench: --sync %q: want default or always\n", s)
			os.Exit(2)
		}
	}
	if *quick {
		*repeat = 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "apiops-bench:", err)
		os.Exit(1)
	}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "apiops-bench:", err)
			os.Exit(1)
		}
	}
	err = bench.Run(ctx, bench.Options{
		NATSServer:      *natsServer,
		Simulator:       *sim,
		Worker:          *worker,
		Self:            self,
		Scenarios:       selected,
		Syncs:           modes,
		Repeat:          *repeat,
		RunTimeout:      *timeout,
		ProfileDir:      *profile,
		ProfileScenario: *profileScenario,
		Against:         *against,
		Out:             os.Stdout,
		Progress:        os.Stderr,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "apiops-bench:", err)
		os.Exit(1)
	}
}
