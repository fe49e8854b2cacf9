package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

func parse(t *testing.T, args ...string) (options, error) {
	t.Helper()
	fs := flag.NewFlagSet("apiops-sim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return parseOptions(fs, args)
}

// The cases set environment variables, so they cannot run in parallel.
func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		args     []string
		dialect  simulator.Dialect
		lifetime time.Duration
	}{
		{name: "defaults", dialect: simulator.DialectMixed, lifetime: time.Hour},
		{name: "flags", args: []string{"--dialect", "openapi", "--token-lifetime", "90s"},
			dialect: simulator.DialectOpenAPI, lifetime: 90 * time.Second},
		{name: "environment", env: map[string]string{"APIOPS_SIM_DIALECT": "mixed", "APIOPS_SIM_TOKEN_LIFETIME": "0"},
			dialect: simulator.DialectMixed},
		{name: "flag beats environment", env: map[string]string{"APIOPS_SIM_DIALECT": "mixed"},
			args: []string{"-dialect=docs"}, dialect: simulator.DialectDocs, lifetime: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			o, err := parse(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if o.dialect != tc.dialect || o.tokenLifetime != tc.lifetime {
				t.Errorf("dialect %q, token lifetime %v; want %q, %v", o.dialect, o.tokenLifetime, tc.dialect, tc.lifetime)
			}
		})
	}
}

func TestParseOptionsRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string // each in the error
	}{
		{name: "unknown dialect", args: []string{"--dialect", "swagger"},
			want: []string{"--dialect", `"swagger"`, "seed, docs, openapi, mixed"}},
		{name: "dialect in other case", args: []string{"--dialect", "OpenAPI"},
			want: []string{"--dialect", "seed, docs, openapi, mixed"}},
		{name: "unknown dialect from the environment", env: map[string]string{"APIOPS_SIM_DIALECT": "v2"},
			want: []string{"--dialect", `"v2"`, "seed, docs, openapi, mixed"}},
		{name: "negative token lifetime", args: []string{"--token-lifetime", "-1m"},
			want: []string{"--token-lifetime", "negative"}},
		{name: "token lifetime not a duration", env: map[string]string{"APIOPS_SIM_TOKEN_LIFETIME": "1 hour"},
			want: []string{"APIOPS_SIM_TOKEN_LIFETIME"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := parse(t, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

func TestParseRouteFaults(t *testing.T) {
	o, err := parse(t, "--unhealthy-routes", "MyProject/PaymentsAPI/production, MyProject/MyAPI/staging",
		"--lagging-routes", "MyProject/PaymentsAPI/production=3,TeamA/OrdersAPI/test=1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[route]simulator.RouteFault{
		{"MyProject", "PaymentsAPI", "production"}: {Unhealthy: true, LagReads: 3},
		{"MyProject", "MyAPI", "staging"}:          {Unhealthy: true},
		{"TeamA", "OrdersAPI", "test"}:             {LagReads: 1},
	}
	if len(o.routeFaults) != len(want) {
		t.Fatalf("route faults %v, want %v", o.routeFaults, want)
	}
	for r, f := range want {
		if o.routeFaults[r] != f {
			t.Errorf("%s: %+v, want %+v", r, o.routeFaults[r], f)
		}
	}
	if err := checkRoutes(simulator.DemoSeed(), o.routeFaults); err != nil {
		t.Errorf("checkRoutes: %v", err)
	}
	for _, r := range []route{{"MyProject", "NoAPI", "production"}, {"MyProject", "MyAPI", "test"}, {"Nope", "MyAPI", "production"}} {
		if err := checkRoutes(simulator.DemoSeed(), map[route]simulator.RouteFault{r: {Unhealthy: true}}); err == nil || !strings.Contains(err.Error(), r.String()) {
			t.Errorf("checkRoutes(%s) = %v, want an error naming it", r, err)
		}
	}
}

func TestParseRouteFaultsRefuses(t *testing.T) {
	for _, args := range [][]string{
		{"--unhealthy-routes", "MyProject/PaymentsAPI"},
		{"--unhealthy-routes", "MyProject//production"},
		{"--lagging-routes", "MyProject/PaymentsAPI/production"},
		{"--lagging-routes", "MyProject/PaymentsAPI/production=0"},
		{"--lagging-routes", "MyProject/PaymentsAPI/production=x"},
	} {
		if _, err := parse(t, args...); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: error %v, want one naming %s", args, err, args[0])
		}
	}
}
