// Command apiops-bench measures apiops-worker's throughput, latency, CPU and memory
// against the APIOps simulator, next to a minimal hand-written baseline, and prints a
// table. It starts nats-server and apiops-sim as separate processes (build them first;
// `make bench` does) and runs the worker in-process. See package internal/bench.
//
//	apiops-bench [--quick] [--scenarios 1,2,3,4,5] [--scale 0.5] [--cpuprofile cpu.pprof]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/apiops-worker/apiops-worker/internal/bench"
)

func main() {
	natsServer := flag.String("nats-server", "bin/nats-server", "nats-server binary")
	sim := flag.String("sim", "bin/apiops-sim", "apiops-sim binary")
	quick := flag.Bool("quick", false, "small sizes: a smoke run that checks the harness")
	scenarios := flag.String("scenarios", "1,2,3,4,5,6", "comma-separated scenarios to run:\n"+
		"1: latency 0, 8 in flight; 2: latency 0, 64 in flight; 3: latency 50ms, 64 in flight;\n"+
		"4: latency 50ms, 256 in flight; 5: memory with a small and a large backlog (worker only);\n"+
		"6: latency 50ms, 64 in flight, taken by fleets of 1, 2 and 3 instances (worker only)")
	scale := flag.Float64("scale", 1, "multiply every scenario's number of commands")
	limit := flag.Duration("limit", 0, "stop timing scenario 5's runs after this long (default 20s, 2s with --quick)")
	timeout := flag.Duration("timeout", 5*time.Minute, "fail a run that is not done by then")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of each run's timed part to this file, the run's name inserted before the extension")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = bench.Run(ctx, bench.Options{
		NATSServer: *natsServer,
		Simulator:  *sim,
		Scenarios:  selected,
		RunTimeout: *timeout,
		CPUProfile: *cpuProfile,
		Out:        os.Stdout,
		Progress:   os.Stderr,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "apiops-bench:", err)
		os.Exit(1)
	}
}
