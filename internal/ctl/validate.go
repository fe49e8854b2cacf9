// Package ctl holds the subcommands of apiopsctl.
package ctl

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

// maxLine bounds one JSONL line: a command with keystore files for a few environments.
const maxLine = 8 << 20

// Validate checks every command in r, one JSON object per line naming its own type and
// project. It writes a rejected result line to out for each invalid command and a
// human note naming the line to errOut, and returns how many were invalid.
func Validate(r io.Reader, out, errOut io.Writer) (total, invalid int, err error) {
	enc := json.NewEncoder(out)
	err = eachLine(r, func(n int, line []byte) error {
		total++
		cmd, decodeErr := messages.DecodeLine(line)
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
