// Package ctl holds the subcommands of apiopsctl.
package ctl

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

// maxLine bounds one JSONL line: a command with keystore files for a few environments.
const maxLine = 8 << 20

const validateUsage = `usage: apiopsctl validate [flags] FILE|-

Checks the commands in FILE (- for stdin), one JSON object per line, each naming its
"type" and "project", with the worker's rules. Prints a rejected result line for each
invalid command, and names its line on stderr.

Keystore files are opened with their password and keyStoreType, as the worker opens
them: one that does not open, holds no private key where a keystore is assigned, or
holds a certificate out of date makes its command invalid; a certificate expiring
within 30 days is a warning on stderr. Sealed secrets are checked for form; they
cannot be opened here.

flags:
  --seal-key KEY   sealed secrets must be sealed for this public curve key (X…)
                   (env APIOPS_SEAL_KEY)

exit status: 0 when every command is valid; 2 when some are not; 1 on usage errors or
when FILE cannot be read.
`

// Validate runs "apiopsctl validate" with args (after the subcommand's name) and
// returns the exit status.
func Validate(args []string, env IO) int {
	const name = "validate"
	fs := newFlagSet("apiopsctl "+name, validateUsage, env)
	sealKey := fs.String("seal-key", env.getenv("APIOPS_SEAL_KEY"), "")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return flagFailure(err)
	}
	if len(positional) != 1 {
		return fail(env, name, errors.New("want one FILE, or - for stdin (see apiopsctl validate -h)"))
	}
	if *sealKey != "" {
		if err := seal.CheckPublicKey(*sealKey); err != nil {
			return fail(env, name, fmt.Errorf("--seal-key (APIOPS_SEAL_KEY): %w", err))
		}
	}
	in, hint, closeIn, err := openCommands(positional[0], env.Stdin)
	if err != nil {
		return fail(env, name, err)
	}
	defer closeIn()
	if hint != "" { // said once, rather than a syntax error for each of its lines
		fmt.Fprintf(env.Stderr, "apiopsctl %s: %s\n", name, hint)
		return 2
	}
	total, invalid, err := validateLines(in, env.Stdout, env.Stderr, *sealKey)
	if err != nil {
		return fail(env, name, err)
	}
	if invalid > 0 {
		fmt.Fprintf(env.Stderr, "%d of %d commands are invalid\n", invalid, total)
		return 2
	}
	fmt.Fprintf(env.Stderr, "%d commands are valid\n", total)
	return 0
}

// validateLines checks every command in r, one JSON object per line naming its own
// type and project, and with sealKey that every sealed secret is sealed for it. It
// writes a rejected result line to out for each invalid command and a human note
// naming the line to errOut, and returns how many were invalid.
func validateLines(r io.Reader, out, errOut io.Writer, sealKey string) (total, invalid int, err error) {
	enc := json.NewEncoder(out)
	err = eachLine(r, func(n int, line []byte) error {
		total++
		cmd, decodeErr := messages.DecodeLine(line)
		if decodeErr == nil && sealKey != "" {
			if wrong := sealedForOther(cmd, sealKey); wrong != nil {
				decodeErr = wrong
			}
		}
		if decodeErr == nil {
			decodeErr = checkKeystores(cmd, n, errOut)
		}
		if decodeErr == nil {
			return nil
		}
		invalid++
		fmt.Fprintf(errOut, "line %d: %v\n", n, decodeErr)
		return enc.Encode(messages.Rejection(cmd, decodeErr, time.Now().UTC()))
	})
	return total, invalid, err
}

// eachLine calls fn for each non-blank line of r with its 1-based number.
func eachLine(r io.Reader, fn func(n int, line []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 || isBlank(line) {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read commands: %w", err)
	}
	return nil
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}
