package ctl

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/apiops-worker/apiops-worker/keystores"
	"github.com/apiops-worker/apiops-worker/messages"
)

// checkKeystores opens the keystore files of line n's command as the worker will, so
// that a file APIOps would refuse is caught before anything is published. It prints
// the warnings (a certificate about to expire) to errOut and returns the rejection,
// which names the field and the environment, or nil. Sealed files cannot be opened
// here; the worker checks them.
func checkKeystores(cmd *messages.Command, n int, errOut io.Writer) error {
	warnings, err := keystores.CheckCommand(cmd, time.Now())
	for _, warning := range warnings {
		fmt.Fprintf(errOut, "line %d: warning: %s\n", n, warning)
	}
	var fileErr *keystores.FileError
	if errors.As(err, &fileErr) {
		return fileErr.Rejection()
	}
	return err
}

// refusePlanKeystores opens the keystore files of plan, about to be published by
// apiopsctl name (plan, rotate), as the worker will. Warnings go to stderr unless
// quiet (rotate has warned of its certificates already, as PEM). When a file would be
// refused it prints the plan's rejection as the worker's would be printed (a table or,
// with output json, one JSON line), says on stderr that nothing was published, and
// returns exit status 2 and true.
func refusePlanKeystores(env IO, name, output string, plan *messages.Command, quiet bool) (int, bool) {
	warnings, err := keystores.CheckCommand(plan, time.Now())
	if !quiet {
		for _, warning := range warnings {
			fmt.Fprintf(env.Stderr, "apiopsctl %s: warning: %s\n", name, warning)
		}
	}
	if err == nil {
		return 0, false
	}
	var rejection error = err
	var fileErr *keystores.FileError
	if errors.As(err, &fileErr) {
		rejection = fileErr.Rejection()
	}
	fmt.Fprintf(env.Stderr, "apiopsctl %s: %v; the plan was not published\n", name, rejection)
	if err := writePlanOutput(env, output, messages.Rejection(plan, rejection, time.Now().UTC())); err != nil {
		return fail(env, name, err), true
	}
	return 2, true
}
