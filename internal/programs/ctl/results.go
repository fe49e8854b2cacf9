package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/messages"
)

const resultsUsage = `usage: apiopsctl results [flags]

Follows the result stream and prints each matching result as it is stored, until
interrupted (SIGINT, SIGTERM) or --count results have been printed.

flags:
  --project NAME        only this project's results
  --type TYPE           only this command type; may hold NATS wildcards (credential.*.set)
  --correlation-id ID   only results with this correlationId
  --status LIST         only these statuses, comma-separated: succeeded, partial, failed,
                        rejected, expired
  --all                 start at the beginning of the stream (default: new results only)
  --count N             stop after N matching results (default 0: never)
  --output FORMAT       json (default; one result per line) or table
  --stream NAME         the result stream (default APIOPS_RESULTS)
` + connUsage

// Results runs "apiopsctl results" with args (after the subcommand's name) until ctx
// ends or --count results are printed, and returns the exit status.
func Results(ctx context.Context, args []string, env IO) int {
	return results(ctx, args, env, nil)
}

// resultFilter is what a result must match beyond the stream's subject filter.
type resultFilter struct {
	correlationID string
	statuses      map[messages.Status]bool // nil: any
}

func (f resultFilter) match(r *messages.Result) bool {
	return (f.correlationID == "" || r.CorrelationID == f.correlationID) &&
		(f.statuses == nil || f.statuses[r.Status])
}

// results is Results; ready, when not nil, is called once the consumer exists, so that
// a test knows which results count as new.
func results(ctx context.Context, args []string, env IO, ready func()) int {
	const name = "results"
	fs := newFlagSet("apiopsctl "+name, resultsUsage, env)
	var conn connFlags
	conn.register(fs, env)
	project := fs.String("project", "", "")
	typeName := fs.String("type", "", "")
	correlationID := fs.String("correlation-id", "", "")
	statusList := fs.String("status", "", "")
	all := fs.Bool("all", false, "")
	count := fs.Int("count", 0, "")
	output := fs.String("output", "json", "")
	stream := fs.String("stream", "APIOPS_RESULTS", "")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return flagFailure(err)
	}
	filter := resultFilter{correlationID: *correlationID}
	switch {
	case len(positional) > 0:
		return fail(env, name, fmt.Errorf("unexpected argument %q (see apiopsctl results -h)", positional[0]))
	case *output != "table" && *output != "json":
		return fail(env, name, fmt.Errorf("--output %q: want json or table", *output))
	case *count < 0:
		return fail(env, name, fmt.Errorf("--count %d: want 0 or more", *count))
	case *stream == "":
		return fail(env, name, errors.New("--stream must not be empty"))
	}
	if filter.statuses, err = parseFilters(*project, *typeName, *statusList); err != nil {
		return fail(env, name, err)
	}
	subject := messages.Subjects{Prefix: conn.prefix}.Result(orWildcard(*project, "*"), orWildcard(*typeName, ">"))
	nc, err := conn.connect()
	if err != nil {
		return fail(env, name, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(env, name, err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverNewPolicy}
	if *all {
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, *stream, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		return fail(env, name, fmt.Errorf("follow stream %s: %w", *stream, err))
	}
	it, err := cons.Messages()
	if err != nil {
		return fail(env, name, fmt.Errorf("follow stream %s: %w", *stream, err))
	}
	defer it.Stop()
	if ready != nil {
		ready()
	}

	if *output == "table" {
		fmt.Fprintln(env.Stdout, tableRow(resultsHeader))
	}
	for printed := 0; *count == 0 || printed < *count; {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			return fail(env, name, fmt.Errorf("follow stream %s: %w", *stream, err))
		}
		var r messages.Result
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			fmt.Fprintf(env.Stderr, "apiopsctl %s: skipped a message on %s that is not a result: %v\n", name, msg.Subject(), err)
			continue
		}
		if !filter.match(&r) {
			continue
		}
		if *output == "table" {
			_, err = fmt.Fprintln(env.Stdout, tableRow(resultRow(&r)))
		} else {
			err = writeCompact(env, msg.Data())
		}
		if err != nil {
			return fail(env, name, err)
		}
		printed++
	}
	return 0
}

// The results table has fixed column widths, as rows are printed as they come; a
// longer cell wraps within its column (see wrapRow).
var (
	resultsHeader = []string{"FINISHED", "PROJECT", "ID", "TYPE", "STATUS", "ATTEMPTS", "ENVS OK/FAILED", "ERROR"}
	resultsWidths = []int{20, 16, 28, 28, 9, 8, 14, maxErrorWidth}
)

func resultRow(r *messages.Result) []string {
	finished := "-"
	if !r.FinishedAt.IsZero() {
		finished = r.FinishedAt.UTC().Format(time.RFC3339)
	}
	return append([]string{finished, orDash(r.Project)}, resultCells(r)...)
}

func tableRow(cells []string) string {
	return wrapRow(cells, resultsWidths)
}

// writeCompact prints a result's body as it was stored, on one line.
func writeCompact(env IO, data []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := env.Stdout.Write(buf.Bytes())
	return err
}

func orWildcard(s, wildcard string) string {
	if s == "" {
		return wildcard
	}
	return s
}

// parseFilters checks the --project, --type and --status flags that select results or
// dead letters, and returns the statuses (nil: any).
func parseFilters(project, typeName, statusList string) (map[messages.Status]bool, error) {
	if project != "" {
		if problem := messages.CheckProject(project); problem != "" {
			return nil, fmt.Errorf("--project %q %s", project, problem)
		}
	}
	if err := checkTypeFilter(typeName); err != nil {
		return nil, err
	}
	if statusList == "" {
		return nil, nil
	}
	return parseStatuses(statusList)
}

// checkTypeFilter accepts a command type, or a subject pattern of types with NATS
// wildcards ("credential.*.set", "keystore.>").
func checkTypeFilter(typeName string) error {
	if typeName == "" {
		return nil
	}
	if _, ok := messages.LookupType(typeName); ok {
		return nil
	}
	if !strings.ContainsAny(typeName, "*>") {
		return fmt.Errorf("--type %q is not a command type", typeName)
	}
	tokens := strings.Split(typeName, ".")
	for i, tok := range tokens {
		switch {
		case tok == "" || strings.IndexFunc(tok, unicode.IsSpace) >= 0:
			return fmt.Errorf("--type %q: tokens must be separated by single dots and hold no whitespace", typeName)
		case strings.ContainsAny(tok, "*>") && tok != "*" && tok != ">":
			return fmt.Errorf("--type %q: a wildcard must be a whole token", typeName)
		case tok == ">" && i != len(tokens)-1:
			return fmt.Errorf("--type %q: > must be the last token", typeName)
		}
	}
	return nil
}

func parseStatuses(list string) (map[messages.Status]bool, error) {
	set := make(map[messages.Status]bool)
	for s := range strings.SplitSeq(list, ",") {
		status := messages.Status(strings.TrimSpace(s))
		if !isKnownStatus(status) {
			return nil, fmt.Errorf("--status: unknown status %s; want %s", strconv.Quote(string(status)), joinStatuses())
		}
		set[status] = true
	}
	return set, nil
}

func joinStatuses() string {
	names := make([]string, len(statusOrder))
	for i, s := range statusOrder {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}
