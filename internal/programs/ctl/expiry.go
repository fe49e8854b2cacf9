package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/expiry"
	"github.com/apiops-worker/apiops-worker/messages"
)

const expiryUsage = `usage: apiopsctl expiry [flags]

Prints the certificates that expire soon, as the active worker last read them for the
projects it watches (apiops-worker --watch-projects): the certificates APIOps lists,
and the first to expire in each keystore's file, per environment. Soonest first;
expired ones are included, with a negative IN.

flags:
  --project NAME     only this project's (repeatable; default every project watched)
  --within DURATION  those that expire within this long from now (default 30d; Nd for
                     days, or a Go duration such as 36h)
  --output FORMAT    table (default), or json: one entry per line
` + connUsage + `
exit status: 0 when the tables were read (whatever they hold); 1 on usage or connection
errors, or when no worker has published a table yet.
`

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// expiryRow is one line of the JSON output: an entry and its days left.
type expiryRow struct {
	expiry.Entry
	InDays int `json:"inDays"`
}

// Expiry runs "apiopsctl expiry" with args (after "expiry") and returns the exit
// status.
func Expiry(ctx context.Context, args []string, env IO) int {
	const name = "expiry"
	fs := newFlagSet("apiopsctl "+name, expiryUsage, env)
	var conn connFlags
	conn.register(fs, env)
	var projects stringList
	fs.Var(&projects, "project", "")
	within := fs.String("within", "30d", "")
	output := fs.String("output", "table", "")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return flagFailure(err)
	}
	window, err := parseWithin(*within)
	switch {
	case len(positional) > 0:
		return fail(env, name, fmt.Errorf("unexpected argument %q", positional[0]))
	case *output != "table" && *output != "json":
		return fail(env, name, fmt.Errorf("--output %q: want table or json", *output))
	case err != nil:
		return fail(env, name, err)
	}
	for _, p := range projects {
		if problem := messages.CheckProject(p); problem != "" {
			return fail(env, name, fmt.Errorf("--project %q %s", p, problem))
		}
	}
	nc, err := conn.connect()
	if err != nil {
		return fail(env, name, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(env, name, err)
	}
	tables, err := expiry.ReadTables(ctx, js, conn.prefix, projects)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		err = fmt.Errorf("%w: no worker has published a table (apiops-worker --watch-projects)", err)
	}
	if err != nil {
		return fail(env, name, err)
	}
	now := time.Now()
	var due []expiry.Entry
	for _, t := range tables {
		for _, e := range t.Entries {
			if e.NotAfter.Sub(now) <= window {
				due = append(due, e)
			}
		}
	}
	expiry.SortEntries(due)
	if *output == "json" {
		enc := json.NewEncoder(env.Stdout)
		for _, e := range due {
			if err := enc.Encode(expiryRow{Entry: e, InDays: daysUntil(now, e.NotAfter)}); err != nil {
				return fail(env, name, err)
			}
		}
	} else if err := printExpiryTable(env, now, due); err != nil {
		return fail(env, name, err)
	}
	printExpirySummary(env, now, tables, projects, len(due), *within)
	return 0
}

// parseWithin reads --within: Nd for N days, or a Go duration.
func parseWithin(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100*365 {
			return 0, fmt.Errorf("--within %q: want a number of days such as 30d, or a duration such as 36h", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("--within %q: want a number of days such as 30d, or a duration such as 36h", s)
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("--within %q must not be negative", s)
	}
	return d, nil
}

// daysUntil is the days from now to t, rounded to the nearest: 12 for a certificate
// that expires in 11 days and 20 hours, -40 for one that expired 40 days ago, 0
// within 12 hours either way (NOT AFTER tells those apart).
func daysUntil(now, t time.Time) int {
	return int(math.Round(t.Sub(now).Hours() / 24))
}

func printExpiryTable(env IO, now time.Time, due []expiry.Entry) error {
	tw := tabwriter.NewWriter(env.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NOT AFTER\tIN\tPROJECT\tKIND\tNAME\tENVIRONMENT")
	for _, e := range due {
		fmt.Fprintf(tw, "%s\t%dd\t%s\t%s\t%s\t%s\n", e.NotAfter.UTC().Format(time.RFC3339), daysUntil(now, e.NotAfter),
			orDash(e.Project), orDash(e.Kind), orDash(e.Name), orDash(e.Environment))
	}
	return tw.Flush()
}

// printExpirySummary says on stderr how many are due, and which projects' last read
// had failures, or has no table: their certificates may be missing above.
func printExpirySummary(env IO, now time.Time, tables []expiry.Table, projects []string, due int, within string) {
	noun, verb := "certificates", "expire"
	if due == 1 {
		noun, verb = "certificate", "expires"
	}
	watched := "projects"
	if len(tables) == 1 {
		watched = "project"
	}
	fmt.Fprintf(env.Stderr, "%d %s %s within %s, in %d %s watched\n", due, noun, verb, within, len(tables), watched)
	read := map[string]bool{}
	for _, t := range tables {
		read[t.Project] = true
		if t.Failures > 0 {
			fmt.Fprintf(env.Stderr, "%s: %d could not be read at %s (%s ago); the worker's log and apiops_worker_expiry_read_failures_total say why\n",
				oneLine(t.Project), t.Failures, t.ReadAt.UTC().Format(time.RFC3339), now.Sub(t.ReadAt).Round(time.Second))
		}
	}
	for _, p := range projects {
		if !read[p] {
			fmt.Fprintf(env.Stderr, "%s: no table: the worker does not watch it, or has not read it yet\n", p)
		}
	}
}
