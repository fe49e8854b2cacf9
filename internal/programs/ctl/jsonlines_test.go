package ctl

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// indent pretty-prints a JSON line as jq does.
func indent(t *testing.T, line string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(line), "", "  "); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestValidateSaysInputIsPrettyPrinted: a JSON value spread over lines is named once
// as such, with the way to compact it, rather than rejected line by line.
func TestValidateSaysInputIsPrettyPrinted(t *testing.T) {
	rotation := rotationLines(t)
	one := indent(t, rotation[0])
	oneLines := strings.Count(one, "\n") + 1
	array := indent(t, "["+rotation[0]+","+rotation[1]+"]")
	for _, tc := range []struct {
		name, stdin string
		want        string
	}{
		{"an object", one + "\n", "apiopsctl validate: input is one command per line (JSON Lines); this looks like a JSON value spread over " + strconv.Itoa(oneLines) + " lines: compact it, e.g. with jq -c\n"},
		{"after blank lines", "\n  \n" + one, "this looks like a JSON value spread over " + strconv.Itoa(oneLines) + " lines"},
		{"an array", array, "this looks like a JSON array spread over " + strconv.Itoa(strings.Count(array, "\n")+1) + " lines: put each command on a line of its own, e.g. with jq -c '.[]'\n"},
		{"several", one + "\n" + one + "\n", "this looks like 2 JSON values spread over " + strconv.Itoa(2*oneLines) + " lines: compact them, e.g. with jq -c\n"},
	} {
		var out output
		e := &testEnv{vars: map[string]string{}}
		if code := Validate([]string{"-"}, e.io(tc.stdin, &out)); code != 2 {
			t.Errorf("%s: exit %d, want 2", tc.name, code)
		}
		if got := out.stderr.String(); !strings.Contains(got, tc.want) || strings.Count(got, "\n") != 1 {
			t.Errorf("%s: stderr %q, want one line with %q", tc.name, got, tc.want)
		}
		if out.stdout.Len() != 0 {
			t.Errorf("%s: stdout %q", tc.name, out.stdout.String())
		}
	}
}

// TestValidateJSONLinesAsBefore: JSON Lines, and lines that are not JSON values spread
// over lines, are checked line by line as before.
func TestValidateJSONLinesAsBefore(t *testing.T) {
	rotation := rotationLines(t)
	for _, tc := range []struct {
		name, stdin string
		code        int
		stderr      []string
	}{
		{"JSON Lines", strings.Join(rotation, "\n"), 0, []string{"11 commands are valid"}},
		{"a broken first line", "{\n" + rotation[0] + "\n", 2, []string{"line 1: invalid_json", "1 of 2 commands are invalid"}},
		{"an object cut short", indent(t, rotation[0])[:40], 2, []string{"line 1: invalid_json", "line 2: invalid_json"}},
		{"a bad line after a good one", rotation[0] + "\n{\n", 2, []string{"line 2: invalid_json", "1 of 2 commands are invalid"}},
	} {
		var out output
		e := &testEnv{vars: map[string]string{}}
		if code := Validate([]string{"-"}, e.io(tc.stdin, &out)); code != tc.code {
			t.Errorf("%s: exit %d, want %d; stderr:\n%s", tc.name, code, tc.code, out.stderr.String())
		}
		for _, want := range tc.stderr {
			if !strings.Contains(out.stderr.String(), want) {
				t.Errorf("%s: stderr lacks %q:\n%s", tc.name, want, out.stderr.String())
			}
		}
		if strings.Contains(out.stderr.String(), "JSON Lines") {
			t.Errorf("%s: said to be pretty-printed:\n%s", tc.name, out.stderr.String())
		}
	}
}

// TestSubmitSaysInputIsPrettyPrinted: submit says so too, and publishes nothing.
func TestSubmitSaysInputIsPrettyPrinted(t *testing.T) {
	e := newTestEnv(t)
	var out output
	if code := Submit(testContext(t), []string{"-"}, e.io(indent(t, rotationLines(t)[0]), &out)); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if got := out.stderr.String(); !strings.HasPrefix(got, "apiopsctl submit: input is one command per line (JSON Lines); this looks like a JSON value spread over") || strings.Count(got, "\n") != 1 {
		t.Errorf("stderr %q", got)
	}
	if info, err := e.js.Stream(testContext(t), "APIOPS_COMMANDS"); err != nil || info.CachedInfo().State.Msgs != 0 {
		t.Errorf("published: %v", err)
	}
}
