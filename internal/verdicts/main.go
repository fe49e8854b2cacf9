// Command verdicts prints the worker's verdict on commands, so that a check written in
// another language (examples/python/check_corpus.py, make check-python) can compare a
// JSON Schema validator's verdicts with the real decoder's rather than with a copy of
// its rules.
//
// It reads one JSON object a line on standard input, {"project", "type", "command"}:
// the subject's project and type, and the body as a string (a string, so that bodies
// that are not JSON can be judged too). For each it writes one line,
// {"ok": true} or {"ok": false, "code", "field", "message"}, in the same order.
//
// Sealed secrets are checked for form only (messages.Decode without an opener), which
// is all a schema can check: opening needs the workers' keys.
//
//	go run ./internal/verdicts < commands.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/apiops-worker/apiops-worker/messages"
)

type input struct {
	Project *string `json:"project"`
	Type    *string `json:"type"`
	Command *string `json:"command"`
}

type verdict struct {
	OK      bool   `json:"ok"`
	Code    string `json:"code,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "verdicts:", err)
		os.Exit(1)
	}
}

func run() error {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 16<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for n := 1; in.Scan(); n++ {
		var c input
		if err := json.Unmarshal(in.Bytes(), &c); err != nil || c.Project == nil || c.Type == nil || c.Command == nil {
			// A malformed input line is the caller's mistake, not a verdict.
			return fmt.Errorf("line %d: want {\"project\", \"type\", \"command\"} with string values", n)
		}
		v := verdict{OK: true}
		if _, err := messages.Decode(*c.Project, *c.Type, []byte(*c.Command)); err != nil {
			var e *messages.Error
			if !errors.As(err, &e) {
				return fmt.Errorf("line %d: Decode returned %T, not *messages.Error: %v", n, err, err)
			}
			v = verdict{Code: e.Code, Field: e.Field, Message: e.Message}
		}
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	if err := in.Err(); err != nil {
		return err
	}
	return out.Flush()
}
