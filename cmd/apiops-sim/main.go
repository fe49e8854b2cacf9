// Command apiops-sim serves the in-memory APIOps simulator of package
// simulator over HTTP, so the worker can be demonstrated and load-tested
// without an Apinizer.
//
// Every flag can also be set from the environment as APIOPS_SIM_<FLAG>, with
// dashes as underscores (APIOPS_SIM_ERROR_RATE=0.1); the command line wins. The
// token is never a flag, so it stays out of process listings: APIOPS_TOKEN, when
// set, replaces the seed's token.
//
// --dialect picks which of the forms APIOps's documentation shows the
// simulator answers in (see simulator.Dialect); clients of the seed may get
// tokens from POST /apiops/auth/token that live for --token-lifetime.
//
// --unhealthy-routes and --lagging-routes make API proxies' routes misbehave
// in route-health after a deployment (see simulator.RouteFault): a list of
// project/proxy/environment, and of project/proxy/environment=N reads.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "apiops-sim:", err)
		os.Exit(1)
	}
}

// options are the command's settings, from flags and the environment.
type options struct {
	addr          string
	seedPath      string
	faults        simulator.Faults
	dialect       simulator.Dialect
	tokenLifetime time.Duration
	routeFaults   map[route]simulator.RouteFault
}

// route is an API proxy's route to an environment.
type route struct{ project, proxy, environment string }

func (r route) String() string { return r.project + "/" + r.proxy + "/" + r.environment }

// parseOptions defines the flags on fs, sets them from the environment and then
// from args, and checks them.
func parseOptions(fs *flag.FlagSet, args []string) (options, error) {
	var o options
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8085", "listen address")
	fs.StringVar(&o.seedPath, "seed", "", "seed file with the token, the clients and the projects (default: the built-in one, also at testdata/apiops-seed.json)")
	fs.DurationVar(&o.faults.Latency, "latency", 0, "delay added before every answer")
	fs.Float64Var(&o.faults.ErrorRate, "error-rate", 0, "fraction of requests answered with --error-status")
	fs.IntVar(&o.faults.ErrorStatus, "error-status", http.StatusServiceUnavailable, "status of injected errors")
	fs.DurationVar(&o.faults.RetryAfter, "retry-after", 0, "Retry-After sent with injected 429 and 503 answers")
	fs.BoolVar(&o.faults.HTMLErrors, "html-errors", false, "give injected errors an HTML body, like a proxy's error page")
	fs.Float64Var(&o.faults.ResetRate, "reset-rate", 0, "fraction of requests whose connection is reset")
	failEnvironments := fs.String("fail-environments", "", "comma-separated environments whose deployments fail")
	dialect := fs.String("dialect", string(simulator.DialectMixed),
		"form of the answers, as one of APIOps's documents shows them: "+simulator.DialectNames())
	fs.DurationVar(&o.tokenLifetime, "token-lifetime", simulator.DefaultTokenLifetime,
		"lifetime of tokens from POST /apiops/auth/token; 0 means they never expire")
	unhealthy := fs.String("unhealthy-routes", "",
		"comma-separated project/proxy/environment routes that lose a pod when deployed past their current revision, until rolled back")
	lagging := fs.String("lagging-routes", "",
		"comma-separated project/proxy/environment=N routes where, after a deploy or rollback, a pod reports the previous revision for N route-health reads")
	if err := flagsFromEnv(fs); err != nil {
		return options{}, err
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	o.faults.FailEnvironments = splitList(*failEnvironments)
	if err := checkFaults(o.faults); err != nil {
		return options{}, err
	}
	var err error
	if o.dialect, err = simulator.ParseDialect(*dialect); err != nil {
		return options{}, fmt.Errorf("--dialect: %w", err)
	}
	if o.tokenLifetime < 0 {
		return options{}, fmt.Errorf("--token-lifetime %v: must not be negative", o.tokenLifetime)
	}
	if o.routeFaults, err = parseRouteFaults(*unhealthy, *lagging); err != nil {
		return options{}, err
	}
	return o, nil
}

// parseRouteFaults reads --unhealthy-routes and --lagging-routes; a route in
// both gets both faults.
func parseRouteFaults(unhealthy, lagging string) (map[route]simulator.RouteFault, error) {
	faults := map[route]simulator.RouteFault{}
	for _, item := range splitList(unhealthy) {
		r, err := parseRoute(item)
		if err != nil {
			return nil, fmt.Errorf("--unhealthy-routes: %w", err)
		}
		f := faults[r]
		f.Unhealthy = true
		faults[r] = f
	}
	for _, item := range splitList(lagging) {
		name, count, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("--lagging-routes %q: want project/proxy/environment=N", item)
		}
		r, err := parseRoute(name)
		if err != nil {
			return nil, fmt.Errorf("--lagging-routes: %w", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(count))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--lagging-routes %q: want a number of reads of at least 1 after =", item)
		}
		f := faults[r]
		f.LagReads = n
		faults[r] = f
	}
	return faults, nil
}

func parseRoute(s string) (route, error) {
	parts := strings.Split(strings.TrimSpace(s), "/")
	if len(parts) != 3 || slices.Contains(parts, "") {
		return route{}, fmt.Errorf("%q: want project/proxy/environment", s)
	}
	return route{parts[0], parts[1], parts[2]}, nil
}

// checkRoutes tells which route of the faults the seed lacks, since the
// simulator takes a fault for a route it lacks for a programming error.
func checkRoutes(seed simulator.Seed, faults map[route]simulator.RouteFault) error {
	for r := range faults {
		p, ok := seed.Projects[r.project]
		if _, hasProxy := p.APIProxies[r.proxy]; !ok || !hasProxy || !slices.Contains(p.Environments, r.environment) {
			return fmt.Errorf("route fault for %s: the seed has no such project, API proxy or environment", r)
		}
	}
	return nil
}

func run() error {
	o, err := parseOptions(flag.CommandLine, os.Args[1:])
	if err != nil {
		return err
	}
	seed := simulator.DemoSeed()
	if o.seedPath != "" {
		if seed, err = simulator.LoadSeed(o.seedPath); err != nil {
			return err
		}
	}
	if token := strings.TrimSpace(os.Getenv("APIOPS_TOKEN")); token != "" {
		seed.Token = token
	}
	// Without either, nothing could ever be authorised.
	if seed.Token == "" && len(seed.Clients) == 0 {
		return errors.New("no token: set APIOPS_TOKEN, the seed's token or the seed's clients")
	}
	if err := checkRoutes(seed, o.routeFaults); err != nil {
		return err
	}
	sim := simulator.New(seed)
	sim.SetFaults(o.faults)
	for r, f := range o.routeFaults {
		sim.SetRouteFault(r.project, r.proxy, r.environment, f)
	}
	sim.SetDialect(o.dialect)
	sim.SetTokenLifetime(o.tokenLifetime)
	// A long-running simulator would otherwise keep every request in memory.
	sim.SetRecording(false)

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("apiops-sim: serving APIOps on http://%s (seed %s, %d projects, dialect %s, token lifetime %v, faults %+v, route faults %v)",
		ln.Addr(), o.seedPath, len(seed.Projects), o.dialect, o.tokenLifetime, o.faults, o.routeFaults)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// flagsFromEnv sets flags from APIOPS_SIM_* variables. It runs before Parse, so
// flags given on the command line override them.
func flagsFromEnv(fs *flag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		key := "APIOPS_SIM_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
			}
		}
	})
	return errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func checkFaults(f simulator.Faults) error {
	switch {
	case f.ErrorRate < 0 || f.ErrorRate > 1:
		return fmt.Errorf("--error-rate %v: want a fraction between 0 and 1", f.ErrorRate)
	case f.ResetRate < 0 || f.ResetRate > 1:
		return fmt.Errorf("--reset-rate %v: want a fraction between 0 and 1", f.ResetRate)
	case f.ErrorStatus < 400 || f.ErrorStatus > 599:
		return fmt.Errorf("--error-status %d: want a 4xx or 5xx status", f.ErrorStatus)
	case f.Latency < 0 || f.RetryAfter < 0:
		return errors.New("--latency and --retry-after must not be negative")
	}
	return nil
}
