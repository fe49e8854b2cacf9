package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/apiops-worker/apiops-worker/messages"
)

const planUsage = `usage: apiopsctl plan [flags] FILE|-
       apiopsctl plan --json [flags] FILE|-

Turns the commands in FILE (- for stdin), one JSON object per line, each naming its
"type" and "project" (all the same project), into one rotation plan, publishes it
and waits for its result. The worker runs the steps in order, each only after the one
before succeeded; the first that does not succeed stops the plan, the later ones are
skipped and the --on-failure steps run. A line's id, correlationId and replyTo are
not used: step n's id is <plan id>:step-<n>.

With --json, FILE is a plan as it travels ({"id","steps":[{"type","params"}…],
"onFailure":[…],"partialSucceeds"}), published as it is; its project comes from
--project or its "project" field.

Prints a table of the steps (on a terminal, each step as it finishes, on stderr) or,
with --output json, the plan's result as one JSON line.

flags:
  --id ID             the plan's id (default: from FILE's name and the time)
  --project NAME      the project of a --json plan that names none
  --correlation-id C  the plan's correlationId (default: its id)
  --on-failure FILE   JSONL commands to run, in order, when a step does not succeed
  --partial-succeeds  a step that is partial (some environment failed) does not stop
                      the plan
  --json              FILE is a whole plan in JSON
  --timeout D         how long to wait for the plan's result (default 10m)
  --output FORMAT     table (default) or json
  --seal              seal every plaintext secret for the key the running workers
                      announce (see apiopsctl seal pubkey) before publishing
  --seal-key KEY      seal them for this public curve key (X…) instead (env APIOPS_SEAL_KEY)
` + connUsage + `
exit status: 0 when the plan succeeded; 2 when it did not (failed, partial, rejected,
expired, or no result before the timeout); 1 on usage, input or connection errors.
`

// planRun is what plan and rotate share: how to submit a plan and show its result.
type planRun struct {
	conn         connFlags
	timeout      time.Duration
	output       string
	sealDiscover bool
	sealKey      string
	sealKeyGiven bool
}

func (r *planRun) register(fs interface {
	Duration(string, time.Duration, string) *time.Duration
	String(string, string, string) *string
	Bool(string, bool, string) *bool
}, env IO) (apply func()) {
	timeout := fs.Duration("timeout", 10*time.Minute, "")
	output := fs.String("output", "table", "")
	discover := fs.Bool("seal", false, "")
	key := fs.String("seal-key", env.getenv("APIOPS_SEAL_KEY"), "")
	return func() { r.timeout, r.output, r.sealDiscover, r.sealKey = *timeout, *output, *discover, *key }
}

// check reports flags that cannot work, before anything is read.
func (r *planRun) check() error {
	switch {
	case r.output != "table" && r.output != "json":
		return fmt.Errorf("--output %q: want table or json", r.output)
	case r.timeout <= 0:
		return fmt.Errorf("--timeout %v: want a positive duration", r.timeout)
	}
	if _, err := sealOption(r.sealDiscover, r.sealKey, r.sealKeyGiven); err != nil {
		return err
	}
	return r.conn.check()
}

// Plan runs "apiopsctl plan" with args and returns the exit status.
func Plan(ctx context.Context, args []string, env IO) int {
	const name = "plan"
	fs := newFlagSet("apiopsctl "+name, planUsage, env)
	var run planRun
	run.conn.register(fs, env)
	apply := run.register(fs, env)
	id := fs.String("id", "", "")
	project := fs.String("project", "", "")
	correlationID := fs.String("correlation-id", "", "")
	onFailure := fs.String("on-failure", "", "")
	partial := fs.Bool("partial-succeeds", false, "")
	whole := fs.Bool("json", false, "")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return flagFailure(err)
	}
	apply()
	run.sealKeyGiven = flagGiven(fs, "seal-key")
	if len(positional) != 1 {
		return fail(env, name, errors.New("want one FILE, or - for stdin (see apiopsctl plan -h)"))
	}
	if *whole && (*onFailure != "" || *partial) {
		return fail(env, name, errors.New("--on-failure and --partial-succeeds build a plan from JSONL: a --json plan has its own onFailure and partialSucceeds"))
	}
	if err := run.check(); err != nil {
		return fail(env, name, err)
	}
	planID := *id
	if planID == "" {
		planID = defaultPlanID(positional[0], time.Now())
	}
	var plan *messages.Command
	if *whole {
		plan, err = readWholePlan(positional[0], env.Stdin, planID, flagGiven(fs, "id"), *project, *correlationID)
	} else {
		plan, err = readPlanLines(positional[0], *onFailure, env.Stdin, planID, *project, *correlationID, *partial)
	}
	if err != nil {
		return fail(env, name, err)
	}
	if code, refused := refusePlanKeystores(env, name, run.output, plan, false); refused {
		return code
	}
	return run.submit(ctx, name, plan, env)
}

// defaultPlanID is e.g. rotation-20261122T101500Z: FILE's base name without its
// extension, and the time.
func defaultPlanID(file string, now time.Time) string {
	base := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	if file == "-" || base == "" {
		base = "plan"
	}
	base = strings.Map(func(r rune) rune {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)) {
			return r
		}
		return '-'
	}, base)
	return truncate(base, 80) + "-" + now.UTC().Format("20060102T150405Z")
}

// readSteps reads JSONL commands as plan steps of one project. Every invalid line is
// reported; the error names the lines.
func readSteps(name string, in io.Reader, project *string, what string) ([]*messages.Command, error) {
	var steps []*messages.Command
	var problems []string
	projectLine := 0
	err := eachLine(in, func(n int, line []byte) error {
		cmd, err := messages.DecodeLine(line)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s line %d: %v", name, n, err))
			return nil
		case *project == "":
			*project, projectLine = cmd.Project, n
		case cmd.Project != *project:
			where := "--project"
			if projectLine > 0 {
				where = fmt.Sprintf("line %d", projectLine)
			}
			problems = append(problems, fmt.Sprintf("%s line %d: project %q is not the plan's project %q (from %s): a plan's steps are all of one project", name, n, cmd.Project, *project, where))
			return nil
		}
		if cmd.Type == messages.PlanType {
			problems = append(problems, fmt.Sprintf("%s line %d: a plan cannot be a step of a plan", name, n))
			return nil
		}
		steps = append(steps, &messages.Command{Type: cmd.Type, Project: cmd.Project, Params: cmd.Params})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	if len(steps) == 0 && what == "steps" {
		return nil, fmt.Errorf("%s: no commands: a plan needs at least one step", name)
	}
	return steps, nil
}

func readPlanLines(file, onFailureFile string, stdin io.Reader, id, project, correlationID string, partial bool) (*messages.Command, error) {
	in, closeIn, err := OpenInput(file, stdin)
	if err != nil {
		return nil, err
	}
	defer closeIn()
	inName := file
	if file == "-" {
		inName = "stdin"
	}
	steps, err := readSteps(inName, in, &project, "steps")
	if err != nil {
		return nil, err
	}
	var undo []*messages.Command
	if onFailureFile != "" {
		f, err := os.Open(onFailureFile)
		if err != nil {
			return nil, fmt.Errorf("--on-failure: %w", err)
		}
		defer f.Close()
		if undo, err = readSteps(onFailureFile, f, &project, "onFailure"); err != nil {
			return nil, err
		}
	}
	return newPlan(id, project, correlationID, steps, undo, partial)
}

// newPlan makes a plan and validates it whole; the error names what is wrong.
func newPlan(id, project, correlationID string, steps, undo []*messages.Command, partial bool) (*messages.Command, error) {
	if correlationID == "" {
		correlationID = id
	}
	plan := &messages.Command{ID: id, Type: messages.PlanType, Project: project, CorrelationID: correlationID,
		Params: &messages.Plan{Steps: steps, OnFailure: undo, PartialSucceeds: partial}}
	if err := plan.Validate(); err != nil {
		return nil, fmt.Errorf("the plan: %w", err)
	}
	return plan, nil
}

// readWholePlan reads a plan in its wire form; --id replaces its id, and it gets one
// when it has none.
func readWholePlan(file string, stdin io.Reader, id string, idGiven bool, project, correlationID string) (*messages.Command, error) {
	in, closeIn, err := OpenInput(file, stdin)
	if err != nil {
		return nil, err
	}
	defer closeIn()
	data, err := io.ReadAll(io.LimitReader(in, 64<<20))
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %v", file, err)
	}
	var own string
	if raw, ok := fields["project"]; ok {
		if json.Unmarshal(raw, &own) != nil || own == "" {
			return nil, fmt.Errorf("%s: project must be a non-empty string", file)
		}
	}
	switch {
	case project == "" && own == "":
		return nil, fmt.Errorf("%s names no project: give --project", file)
	case project != "" && own != "" && project != own:
		return nil, fmt.Errorf("%s is a plan of project %q, not --project %q", file, own, project)
	case project == "":
		project = own
	}
	if _, ok := fields["id"]; idGiven || !ok {
		fields["id"], _ = json.Marshal(id)
	}
	if correlationID != "" {
		fields["correlationId"], _ = json.Marshal(correlationID)
	}
	delete(fields, "replyTo") // the client sets its own
	data, _ = json.Marshal(fields)
	plan, err := messages.Decode(project, messages.PlanType, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return plan, nil
}

// submit publishes plan and shows its result; it returns the exit status.
func (r *planRun) submit(ctx context.Context, name string, plan *messages.Command, env IO) int {
	p, _ := plan.Plan()
	sealOpt, _ := sealOption(r.sealDiscover, r.sealKey, r.sealKeyGiven) // checked before
	c, nc, err := r.conn.publisher(sealOpt, env)
	if err != nil {
		return fail(env, name, err)
	}
	defer nc.Close()
	waitCtx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()

	live := newLiveSteps(env.Stderr, plan.ID, p)
	live.start()
	res, err := c.SubmitPlan(waitCtx, plan, live.step)
	live.finish()
	if err != nil {
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(env.Stderr, "apiopsctl %s: interrupted: plan %s has no result (%d of %d steps reported); it goes on running\n", name, plan.ID, live.done, len(p.Steps))
			return 2
		case errors.Is(err, context.DeadlineExceeded):
			fmt.Fprintf(env.Stderr, "apiopsctl %s: plan %s has no result within --timeout %v (%d of %d steps reported); it goes on running: see apiopsctl results --correlation-id %s\n",
				name, plan.ID, r.timeout, live.done, len(p.Steps), plan.CorrelationID)
			return 2
		}
		return fail(env, name, err)
	}
	if err := writePlanOutput(env, r.output, res); err != nil {
		return fail(env, name, err)
	}
	if res.Status != messages.StatusSucceeded {
		return 2
	}
	return 0
}

// liveSteps shows each step's result as it arrives, on a terminal: a table row and a
// progress bar under it.
type liveSteps struct {
	w      io.Writer
	planID string
	on     bool
	total  int
	done   int
	bar    *progress
	widths []int // STEP, TYPE, STATUS, ATTEMPTS, ERROR
}

// maxStepWidth bounds the STEP column; a longer step id wraps (see wrapRow).
const maxStepWidth = 48

func newLiveSteps(w io.Writer, planID string, p *messages.Plan) *liveSteps {
	// The step ids are known before any result: the STEP column fits the longest, so
	// that ":step-2" shows, up to maxStepWidth.
	step := max(16, utf8.RuneCountInString(messages.StepID(planID, false, len(p.Steps))))
	if len(p.OnFailure) > 0 {
		step = max(step, utf8.RuneCountInString(messages.StepID(planID, true, len(p.OnFailure))))
	}
	return &liveSteps{w: w, planID: planID, on: isTerminal(w), total: len(p.Steps), bar: newProgress(w, len(p.Steps)),
		widths: []int{min(step, maxStepWidth), 26, 10, 8, 0}}
}

func (l *liveSteps) start() {
	if l.on {
		fmt.Fprintln(l.w, wrapRow([]string{"STEP", "TYPE", "STATUS", "ATTEMPTS", "ERROR"}, l.widths))
	}
	l.bar.draw(0)
}

func (l *liveSteps) step(r *messages.Result) {
	if undo, _, _ := messages.ParseStepID(l.planID, r.ID); !undo {
		l.done++
	}
	if l.on {
		cells := resultCells(r)
		fmt.Fprint(l.w, "\r\x1b[K"+wrapRow([]string{cells[0], cells[1], cells[2], cells[3], cells[5]}, l.widths)+"\n")
	}
	l.bar.draw(min(l.done, l.total))
}

func (l *liveSteps) finish() { l.bar.finish() }

// writePlanOutput prints the plan's result: one JSON line, or a table of its steps
// and a summary.
func writePlanOutput(env IO, output string, res *messages.Result) error {
	if output == "json" {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tID\tTYPE\tSTATUS\tATTEMPTS\tENVS OK/FAILED\tERROR")
	for i := range res.Steps {
		fmt.Fprintln(tw, fmt.Sprint(i+1)+"\t"+strings.Join(resultCells(&res.Steps[i]), "\t"))
	}
	for i := range res.OnFailure {
		fmt.Fprintln(tw, fmt.Sprintf("undo %d", i+1)+"\t"+strings.Join(resultCells(&res.OnFailure[i]), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for line := range strings.Lines(table.String()) {
		b.WriteString(strings.TrimRight(line, " \n"))
		b.WriteByte('\n')
	}
	b.WriteString(planSummary(res) + "\n")
	_, err := io.WriteString(env.Stdout, b.String())
	return err
}

// planSummary is e.g. "plan rot-1 failed: step 2 of 10 (credential.truststore.set)
// did not succeed; 8 skipped; onFailure: 1 succeeded". The result the worker answered
// from its record of a plan that had finished is marked: "plan rot-1 failed (stored
// result: not run again): …".
func planSummary(res *messages.Result) string {
	s := fmt.Sprintf("plan %s %s", orDash(res.ID), orDash(string(res.Status)))
	if res.Replayed {
		s += " (stored result: not run again)"
	}
	if res.FailedStep != nil && *res.FailedStep < len(res.Steps) {
		i := *res.FailedStep
		s += fmt.Sprintf(": step %d of %d (%s) did not succeed", i+1, len(res.Steps), orDash(res.Steps[i].Type))
		if skipped := len(res.Steps) - i - 1; skipped > 0 {
			s += fmt.Sprintf("; %d skipped", skipped)
		}
	} else if res.Error != nil && len(res.Steps) == 0 {
		s += ": " + errorCell(res.Error)
	}
	if len(res.OnFailure) > 0 {
		var statuses []messages.Status
		for _, r := range res.OnFailure {
			statuses = append(statuses, r.Status)
		}
		_, counts, _ := strings.Cut(summary(statuses, 0), ": ")
		s += "; onFailure: " + counts
	}
	return s
}
