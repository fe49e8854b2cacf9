package ctl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// spreadJSON recognises a pretty-printed JSON value (or several) where JSON Lines
// are wanted, so that validate and submit say so once instead of rejecting every
// line of it as a syntax error. It looks only when the first non-blank line is not
// JSON by itself but opens an object or array; the JSON Lines of a valid file are
// then never read twice. It returns the hint to print, or rest, which reads in
// from its start as if nothing had been read.
// openCommands opens name ("-": stdin) as commands, one per line, a pretty-printed
// file spread first (see spreadJSON); the caller calls closeIn.
func openCommands(name string, stdin io.Reader) (in io.Reader, hint string, closeIn func(), err error) {
	in, closeIn, err = OpenInput(name, stdin)
	if err != nil {
		return nil, "", nil, err
	}
	if in, hint, err = spreadJSON(in); err != nil {
		closeIn()
		return nil, "", nil, err
	}
	return in, hint, closeIn, nil
}

func spreadJSON(in io.Reader) (rest io.Reader, hint string, err error) {
	br := bufio.NewReaderSize(in, 64<<10)
	var head []byte // the input up to its first non-blank line
	var first []byte
	for start := 0; ; {
		chunk, err := br.ReadSlice('\n')
		head = append(head, chunk...)
		if err == bufio.ErrBufferFull {
			if len(head)-start > maxLine { // eachLine reports the line as too long
				return io.MultiReader(bytes.NewReader(head), br), "", nil
			}
			continue
		}
		if err != nil && err != io.EOF {
			return nil, "", fmt.Errorf("read commands: %w", err)
		}
		if first = bytes.TrimSpace(head[start:]); len(first) > 0 || err != nil {
			break
		}
		start = len(head)
	}
	rest = io.MultiReader(bytes.NewReader(head), br)
	if len(first) == 0 || first[0] != '{' && first[0] != '[' || json.Valid(first) {
		return rest, "", nil
	}
	var seen bytes.Buffer // what the decoder read, to read again when it is not JSON
	dec := json.NewDecoder(io.TeeReader(rest, &seen))
	values, array := 0, false
	for {
		var v json.RawMessage
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			// Not JSON values spread over lines either: each line gets its own error.
			return io.MultiReader(bytes.NewReader(seen.Bytes()), br), "", nil
		}
		if values == 0 {
			array = len(v) > 0 && v[0] == '['
		}
		values++
	}
	lines := bytes.Count(bytes.TrimSpace(seen.Bytes()), []byte("\n")) + 1
	const jsonl = "input is one command per line (JSON Lines); "
	switch {
	case values == 1 && array:
		return nil, fmt.Sprintf(jsonl+"this looks like a JSON array spread over %d lines: put each command on a line of its own, e.g. with jq -c '.[]'", lines), nil
	case values == 1:
		return nil, fmt.Sprintf(jsonl+"this looks like a JSON value spread over %d lines: compact it, e.g. with jq -c", lines), nil
	default:
		return nil, fmt.Sprintf(jsonl+"this looks like %d JSON values spread over %d lines: compact them, e.g. with jq -c", values, lines), nil
	}
}
