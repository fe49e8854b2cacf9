// Command apiopsctl works with apiops-worker commands from the shell.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	// CA roots for images without a system trust store (FROM scratch): used only when
	// the system has none.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/apiops-worker/apiops-worker/internal/buildinfo"
	"github.com/apiops-worker/apiops-worker/internal/programs/ctl"
	"github.com/apiops-worker/apiops-worker/internal/tracecontext"
)

const usage = `usage: apiopsctl <command> [arguments]

commands:
  validate FILE|-   check JSONL commands (each line with "type" and "project");
                    prints a rejected result line per invalid command;
                    exit 0 when all are valid, 2 when some are not; --seal-key
                    KEY checks that sealed secrets are sealed for KEY
  submit FILE|-     publish JSONL commands and wait for their results (a line's
                    replyTo is replaced by apiopsctl's inbox); prints a table or,
                    with --output json, the result lines; exit 0 when all
                    succeeded, 2 when some did not, 1 on usage or connection errors;
                    --seal seals secrets for the workers' key first
  plan FILE|-       run JSONL commands of one project as one rotation plan: in
                    order, each after the one before succeeded; the first that
                    does not succeed stops it and runs --on-failure; --json FILE
                    submits a plan file as it is; exit 0 when it succeeded, 2 when
                    not, 1 on usage or connection errors
  rotate            build a keystore or truststore from PEM files (checked first)
                    and run the rotation plan that creates and assigns it;
                    --dry-run prints the plan, secrets redacted
  results           follow the result stream, filtered by --project, --type,
                    --correlation-id, --status; --all from the start, --count N
                    to stop after N results
  dlq list|replay|purge
                    read, replay (as <id>:replay-<n>) or remove dead letters
  expiry            print the certificates and keystores due to expire (--within
                    30d by default), as the workers' expiry watch last read them
  seal keygen FILE|pubkey
                    make a worker key for sealed secrets; print the key the
                    workers announce
  version           print the version and the commit this binary was built from

Run "apiopsctl <command> -h" for a command's flags. NATS is reached through
--nats-url, --creds, --user, --tls-ca (or NATS_URL, NATS_CREDS, NATS_USER, NATS_CA);
the password comes from NATS_PASSWORD only. Commands carry the trace in TRACEPARENT
and TRACESTATE (W3C Trace Context), when set, to the worker.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A pipeline that runs apiopsctl inside a trace passes it as TRACEPARENT: the
	// commands carry it to the worker.
	ctx = tracecontext.FromEnvironment(ctx, os.Getenv)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	env := ctl.IO{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	switch args[0] {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, buildinfo.String("apiopsctl"))
		return 0
	case "validate":
		return ctl.Validate(args[1:], env)
	case "submit":
		return ctl.Submit(ctx, args[1:], env)
	case "plan":
		return ctl.Plan(ctx, args[1:], env)
	case "rotate":
		return ctl.Rotate(ctx, args[1:], env)
	case "results":
		return ctl.Results(ctx, args[1:], env)
	case "dlq":
		return ctl.DLQ(ctx, args[1:], env)
	case "expiry":
		return ctl.Expiry(ctx, args[1:], env)
	case "seal":
		return ctl.Seal(ctx, args[1:], env)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "apiopsctl: unknown command %q\n%s", args[0], usage)
		return 1
	}
}
