package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

const submitUsage = `usage: apiopsctl submit [flags] FILE|-

Publishes the commands in FILE (- for stdin), one JSON object per line, each naming
its "type" and "project", and waits for every result. An invalid line is not
published: it gets a local rejected result (and its line number on stderr). A line's
own replyTo is replaced by apiopsctl's reply inbox; results are stored in the result
stream as always.

Prints a table, one row per line in input order, and a summary; with --output json,
the result lines instead (one JSON object per line, input order; a command without
a result has no line). A progress bar goes to stderr when it is a terminal.

The worker runs commands for different resources at the same time and orders only
commands for the same resource. When a command depends on another one (assign a
keystore that an earlier line creates), use --sequential.

flags:
  --sequential     publish each command only after the previous one's result
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

	in, closeIn, err := OpenInput(positional[0], env.Stdin)
	if err != nil {
		return fail(env, name, err)
	}
	defer closeIn()
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
		bar := newProgress(env.Stderr, len(cmds))
		done := 0
		bar.draw(done)
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
	if err := writeSubmitOutput(env, *output, rows, missingReason); err != nil {
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
		if decodeErr != nil {
			fmt.Fprintf(errOut, "line %d: %v\n", n, decodeErr)
			rows = append(rows, submitRow{result: messages.Rejection(cmd, decodeErr, time.Now().UTC())})
			return nil
		}
		cmd.ReplyTo = "" // the client sets its own
		rowOf = append(rowOf, len(rows))
		cmds = append(cmds, cmd)
		rows = append(rows, submitRow{cmd: cmd})
		return nil
	})
	return rows, cmds, rowOf, err
}

func writeSubmitOutput(env IO, output string, rows []submitRow, missingReason string) error {
	var statuses []messages.Status
	for _, row := range rows {
		if row.result != nil {
			statuses = append(statuses, row.result.Status)
		}
	}
	missing := countMissing(rows)
	if output == "json" {
		enc := json.NewEncoder(env.Stdout)
		for _, row := range rows {
			if row.result != nil {
				if err := enc.Encode(row.result); err != nil {
					return err
				}
			}
		}
		fmt.Fprintln(env.Stderr, summary(statuses, missing))
		return nil
	}
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tATTEMPTS\tENVS OK/FAILED\tERROR")
	for _, row := range rows {
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
	b.WriteString(summary(statuses, missing) + "\n")
	_, err := io.WriteString(env.Stdout, b.String())
	return err
}

// progress draws "[=========>          ] 5/11 results" on a terminal, redrawn in place.
type progress struct {
	w     io.Writer
	total int
	on    bool
}

const progressWidth = 20

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, total: total, on: isTerminal(w)}
}

func (p *progress) draw(done int) {
	if p.on {
		fmt.Fprint(p.w, "\r"+progressBar(done, p.total))
	}
}

func (p *progress) finish() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}

func progressBar(done, total int) string {
	bar := strings.Repeat("=", progressWidth)
	if done < total {
		filled := done * progressWidth / total
		bar = strings.Repeat("=", filled) + ">" + strings.Repeat(" ", progressWidth-filled-1)
	}
	return fmt.Sprintf("[%s] %d/%d results", bar, done, total)
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
