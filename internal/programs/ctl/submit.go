package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/messages"
)

const submitUsage = `usage: apiopsctl submit [flags] FILE|-

Publishes the commands in FILE (- for stdin), one JSON object per line, each naming
its "type" and "project", and waits for every result. An invalid line is not
published: it gets a local rejected result (and its line number on stderr); that
includes a keystore file that does not open, checked as "apiopsctl validate" does. A line's
own replyTo is replaced by apiopsctl's reply inbox; results are stored in the result
stream as always.

Prints a table, one row per line in input order, and a summary by status and, for
the commands that did not succeed, by error code; with --output json, the result
lines instead (one JSON object per line, input order; a command without a result has
no line) and the summary on stderr. A progress bar with the rate of results and the
time left goes to stderr when it is a terminal.

A command whose id had finished before is not run again: the worker answers with the
result it stored ("replayed": true), whose STATUS reads e.g. "succeeded (stored
result)"; the summary counts them.

A command larger than the workers take (their --max-command-size, asked of them
through NATS service discovery, else 512 KiB) or than the NATS server's max_payload
is not published: it gets a local rejected result naming its size and the limit.

The worker runs commands for different resources at the same time and orders only
commands for the same resource. When a command depends on another one (assign a
keystore that an earlier line creates), use --sequential.

flags:
  --sequential     publish each command only after the previous one's result
  --failed-only    show only the commands that did not succeed (table rows or result
                   lines); the summary still counts every command
  --timeout D      how long to wait for every result (default 2m)
  --output FORMAT  table (default) or json
  --seal           seal every plaintext secret (password, file) for the public key the
                   running workers announce (see apiopsctl seal pubkey) before publishing
  --seal-key KEY   seal them for this public curve key (X…) instead (env APIOPS_SEAL_KEY;
                   --seal wins over the environment)
` + connUsage + `
exit status: 0 when every command succeeded; 2 when some did not (rejected, failed,
partial, expired, or no result before the timeout); 1 on usage or connection errors.
`

// submitRow is one input line: its command, when it was valid, and its result.
type submitRow struct {
	cmd    *messages.Command
	result *messages.Result
	line   int
}

// Submit runs "apiopsctl submit" with args (after the subcommand's name) and returns
// the exit status.
func Submit(ctx context.Context, args []string, env IO) int {
	const name = "submit"
	fs := newFlagSet("apiopsctl "+name, submitUsage, env)
	var conn connFlags
	conn.register(fs, env)
	timeout := fs.Duration("timeout", 2*time.Minute, "")
	output := fs.String("output", "table", "")
	sequential := fs.Bool("sequential", false, "")
	failedOnly := fs.Bool("failed-only", false, "")
	sealDiscover := fs.Bool("seal", false, "")
	sealKey := fs.String("seal-key", env.getenv("APIOPS_SEAL_KEY"), "")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return flagFailure(err)
	}
	sealOpt, err := sealOption(*sealDiscover, *sealKey, flagGiven(fs, "seal-key"))
	if err != nil {
		return fail(env, name, err)
	}
	switch {
	case len(positional) != 1:
		return fail(env, name, errors.New("want one FILE, or - for stdin (see apiopsctl submit -h)"))
	case *output != "table" && *output != "json":
		return fail(env, name, fmt.Errorf("--output %q: want table or json", *output))
	case *timeout <= 0:
		return fail(env, name, fmt.Errorf("--timeout %v: want a positive duration", *timeout))
	}
	if err := conn.check(); err != nil {
		return fail(env, name, err)
	}

	in, hint, closeIn, err := openCommands(positional[0], env.Stdin)
	if err != nil {
		return fail(env, name, err)
	}
	defer closeIn()
	if hint != "" { // said once, rather than a rejection for each of its lines
		fmt.Fprintf(env.Stderr, "apiopsctl %s: %s\n", name, hint)
		return 2
	}
	rows, cmds, rowOf, err := readCommands(in, env.Stderr)
	if err != nil {
		return fail(env, name, err)
	}

	var submitErr error
	if len(cmds) > 0 {
		c, nc, err := conn.publisher(sealOpt, env)
		if err != nil {
			return fail(env, name, err)
		}
		defer nc.Close()
		waitCtx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		cmds, rowOf = refuseTooLarge(waitCtx, c, rows, cmds, rowOf, env.Stderr)
		bar := newProgress(env.Stderr, len(cmds))
		done := 0
		bar.draw(done)
		bar.redrawEvery(time.Second) // the rate and time left change while no result comes
		batches := [][]*messages.Command{cmds}
		if *sequential {
			batches = make([][]*messages.Command, len(cmds))
			for i := range cmds {
				batches[i] = cmds[i : i+1]
			}
		}
		for offset := 0; submitErr == nil && offset < len(cmds); {
			batch := batches[0]
			batches = batches[1:]
			submitErr = c.Submit(waitCtx, batch, func(i int, r *messages.Result) {
				rows[rowOf[offset+i]].result = r
				done++
				bar.draw(done)
			})
			offset += len(batch)
		}
		bar.finish()
	}

	// Without a result because time ran out (or the user interrupted): exit 2, as for
	// any command that did not succeed. Any other failure to submit: exit 1.
	missingReason, status := "", 0
	switch {
	case submitErr == nil:
	case ctx.Err() != nil:
		missingReason, status = "interrupted", 2
		submitErr = fmt.Errorf("interrupted: %d of %d commands have no result", countMissing(rows), len(cmds))
	case errors.Is(submitErr, context.DeadlineExceeded):
		missingReason, status = fmt.Sprintf("none within --timeout %v", *timeout), 2
		submitErr = fmt.Errorf("%d of %d commands have no result within --timeout %v", countMissing(rows), len(cmds), *timeout)
	default:
		status = 1
	}
	if err := writeSubmitOutput(env, *output, rows, missingReason, *failedOnly); err != nil {
		return fail(env, name, err)
	}
	if submitErr != nil {
		fmt.Fprintf(env.Stderr, "apiopsctl %s: %v\n", name, submitErr)
		return status
	}
	for _, row := range rows {
		if row.result.Status != messages.StatusSucceeded {
			return 2
		}
	}
	return 0
}

func countMissing(rows []submitRow) int {
	n := 0
	for _, row := range rows {
		if row.result == nil {
			n++
		}
	}
	return n
}

// readCommands reads every line: an invalid one gets its rejection now, a valid one is
// returned in cmds (replyTo cleared) with rowOf mapping its index to its row.
func readCommands(in io.Reader, errOut io.Writer) (rows []submitRow, cmds []*messages.Command, rowOf []int, err error) {
	err = eachLine(in, func(n int, line []byte) error {
		cmd, decodeErr := messages.DecodeLine(line)
		if decodeErr == nil {
			decodeErr = checkKeystores(cmd, n, errOut)
		}
		if decodeErr != nil {
			fmt.Fprintf(errOut, "line %d: %v\n", n, decodeErr)
			rows = append(rows, submitRow{result: messages.Rejection(cmd, decodeErr, time.Now().UTC())})
			return nil
		}
		cmd.ReplyTo = "" // the client sets its own
		rowOf = append(rowOf, len(rows))
		cmds = append(cmds, cmd)
		rows = append(rows, submitRow{cmd: cmd, line: n})
		return nil
	})
	return rows, cmds, rowOf, err
}

// refuseTooLarge gives each command too large to publish (see client.Publish) its
// local rejection, as an invalid line gets, and returns the others: one command over
// the limit need not hold back the batch, and its line is named before anything is
// published. Any other error is left to Submit, which reports it for the batch.
func refuseTooLarge(ctx context.Context, c *client.Client, rows []submitRow, cmds []*messages.Command, rowOf []int, errOut io.Writer) ([]*messages.Command, []int) {
	var keptCmds []*messages.Command
	var keptRows []int
	for i, cmd := range cmds {
		var tooLarge *client.TooLargeError
		if err := c.Check(ctx, cmd); errors.As(err, &tooLarge) {
			row := &rows[rowOf[i]]
			row.result = messages.Rejection(cmd, tooLarge, time.Now().UTC())
			fmt.Fprintf(errOut, "line %d: %v\n", row.line, row.result.Error)
			continue
		}
		keptCmds, keptRows = append(keptCmds, cmd), append(keptRows, rowOf[i])
	}
	return keptCmds, keptRows
}

// writeSubmitOutput prints the rows, with failedOnly only those of commands that did
// not succeed, and the summary of every row.
func writeSubmitOutput(env IO, output string, rows []submitRow, missingReason string, failedOnly bool) error {
	var results []*messages.Result
	for _, row := range rows {
		if row.result != nil {
			results = append(results, row.result)
		}
	}
	missing := countMissing(rows)
	shown := rows
	if failedOnly {
		shown = nil
		for _, row := range rows {
			if row.result == nil || row.result.Status != messages.StatusSucceeded {
				shown = append(shown, row)
			}
		}
	}
	if output == "json" {
		enc := json.NewEncoder(env.Stdout)
		for _, row := range shown {
			if row.result != nil {
				if err := enc.Encode(row.result); err != nil {
					return err
				}
			}
		}
		fmt.Fprintln(env.Stderr, resultSummary(results, missing))
		return nil
	}
	if len(shown) == 0 { // --failed-only, and all succeeded: a header over no rows says nothing
		_, err := fmt.Fprintln(env.Stdout, resultSummary(results, missing))
		return err
	}
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tATTEMPTS\tENVS OK/FAILED\tERROR")
	for _, row := range shown {
		var cells []string
		if row.result != nil {
			cells = resultCells(row.result)
		} else {
			cells = []string{orDash(row.cmd.ID), orDash(row.cmd.Type), noResult, "-", "-", missingReason}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for line := range strings.Lines(table.String()) { // without the padding of an empty ERROR
		b.WriteString(strings.TrimRight(line, " \n"))
		b.WriteByte('\n')
	}
	b.WriteString(resultSummary(results, missing) + "\n")
	_, err := io.WriteString(env.Stdout, b.String())
	return err
}

// progress draws "[=========>          ] 5/11 results  2.5/s  3s left" on a
// terminal, redrawn in place.
type progress struct {
	w     io.Writer
	total int
	on    bool
	start time.Time
	now   func() time.Time

	mu      sync.Mutex // draws come from the caller and from redrawEvery's goroutine
	done    int
	stop    chan struct{}
	stopped chan struct{}
}

const progressWidth = 20

func newProgress(w io.Writer, total int) *progress {
	// Nothing to wait for, nothing to draw: every command may have been refused.
	return &progress{w: w, total: total, on: total > 0 && isTerminal(w), start: time.Now(), now: time.Now}
}

// redrawEvery redraws the line every interval until finish, so that the rate and the
// time left keep up with a wait in which no result comes. Until finish, nothing else
// may write to the terminal.
func (p *progress) redrawEvery(interval time.Duration) {
	if !p.on || p.stop != nil {
		return
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
				p.mu.Lock()
				p.render()
				p.mu.Unlock()
			}
		}
	}()
}

func (p *progress) draw(done int) {
	if p.on {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.done = done
		p.render()
	}
}

// render draws the line over the one before, clearing what a longer one left.
func (p *progress) render() {
	fmt.Fprint(p.w, "\r\x1b[K"+progressBar(p.done, p.total)+progressRate(p.done, p.total, p.now().Sub(p.start)))
}

func (p *progress) finish() {
	if p.on {
		if p.stop != nil {
			close(p.stop)
			<-p.stopped
		}
		fmt.Fprintln(p.w)
	}
}

func progressBar(done, total int) string {
	bar := strings.Repeat("=", progressWidth)
	if done < total {
		filled := done * progressWidth / total
		bar = strings.Repeat("=", filled) + ">" + strings.Repeat(" ", progressWidth-filled-1)
	}
	return fmt.Sprintf("[%s] %s/%s results", bar, thousands(done), thousands(total))
}

// progressRate is "  2.5/s  3s left": the results per second since the start, and
// the time the rest would take at that rate. It is empty until there is a rate worth
// showing: some results, and a second gone.
func progressRate(done, total int, elapsed time.Duration) string {
	if done == 0 || elapsed < time.Second {
		return ""
	}
	rate := float64(done) / elapsed.Seconds()
	s := "  " + strconv.FormatFloat(rate, 'f', 1, 64) + "/s"
	if rate >= 10 {
		s = "  " + thousands(int(math.Round(rate))) + "/s"
	}
	if done < total {
		s += "  " + timeLeft(time.Duration(float64(total-done)/rate*float64(time.Second))) + " left"
	}
	return s
}

// timeLeft is d to the second, rounded up, in the two largest units: 7s, 3m05s, 1h02m.
func timeLeft(d time.Duration) string {
	secs := int((d + time.Second - 1) / time.Second)
	switch {
	case secs < 60:
		return fmt.Sprintf("%ds", secs)
	case secs < 3600:
		return fmt.Sprintf("%dm%02ds", secs/60, secs%60)
	default:
		return fmt.Sprintf("%dh%02dm", secs/3600, secs%3600/60)
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
