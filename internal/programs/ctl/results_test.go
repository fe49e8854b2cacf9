package ctl

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/apiops-worker/apiops-worker/internal/testkit/fakeworker"
	"github.com/apiops-worker/apiops-worker/messages"
)

// store publishes a result to the result stream as the worker does.
func (e *testEnv) store(t *testing.T, id, project, typeName string, status messages.Status, correlationID string) {
	t.Helper()
	r := messages.Result{ID: id, Type: typeName, Project: project, CorrelationID: correlationID, Status: status, Attempts: 1,
		ReceivedAt: time.Now().UTC(), FinishedAt: time.Now().UTC()}
	if status != messages.StatusSucceeded {
		r.Error = &messages.Error{Code: "bad_request", Message: "APIOps said no"}
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	e.storeRaw(t, messages.Subjects{}.Result(project, typeName), id, data)
}

func (e *testEnv) storeRaw(t *testing.T, subject, id string, data []byte) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(messages.HeaderMsgID, id)
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// ids returns the ids of JSON result lines.
func ids(t *testing.T, stdout string) string {
	t.Helper()
	var got []string
	for _, line := range lines(stdout) {
		if line == "" {
			continue
		}
		var r messages.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		got = append(got, r.ID)
	}
	return strings.Join(got, " ")
}

func TestResultsFilters(t *testing.T) {
	e := newTestEnv(t)
	e.storeRaw(t, "apiops.result.P1.keystore.create", "junk", []byte("not json"))
	e.store(t, "r1", "P1", "keystore.create", messages.StatusSucceeded, "run-1")
	e.store(t, "r2", "TeamA", "credential.truststore.set", messages.StatusFailed, "run-2")
	e.store(t, "r3", "P1", "credential.keystore.set", messages.StatusPartial, "run-2")
	e.store(t, "r4", "TeamA", "keystore.create", messages.StatusRejected, "run-1")
	e.store(t, "r5", "P1", "credential.truststore.set", messages.StatusExpired, "run-1")
	e.store(t, "r6", "TeamA", "credential.truststore.set", messages.StatusSucceeded, "run-2")

	// With --count set to the number that match, a filter that lets a wrong result
	// through shows it, since the others are interleaved before the last match.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--count", "6"}, "r1 r2 r3 r4 r5 r6"},
		{[]string{"--project", "TeamA", "--count", "3"}, "r2 r4 r6"},
		{[]string{"--type", "keystore.create", "--count", "2"}, "r1 r4"},
		{[]string{"--type", "credential.*.set", "--count", "4"}, "r2 r3 r5 r6"},
		{[]string{"--project", "P1", "--type", "credential.>", "--count", "2"}, "r3 r5"},
		{[]string{"--status", "failed,partial", "--count", "2"}, "r2 r3"},
		{[]string{"--correlation-id", "run-2", "--status", "succeeded", "--count", "1"}, "r6"},
	} {
		var out output
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code := Results(ctx, append([]string{"--all"}, tc.args...), e.io("", &out))
		cancel()
		if got := ids(t, out.stdout.String()); code != 0 || got != tc.want {
			t.Errorf("%v: exit %d, results %q, want %q; stderr:\n%s", tc.args, code, got, tc.want, out.stderr.String())
		}
		if tc.want == "r1 r2 r3 r4 r5 r6" && !strings.Contains(out.stderr.String(), "skipped a message on apiops.result.P1.keystore.create that is not a result") {
			t.Errorf("stderr does not mention the message that is not a result:\n%s", out.stderr.String())
		}
	}

	var out output
	if code := Results(testContext(t), []string{"--all", "--output", "table", "--project", "TeamA", "--count", "3"}, e.io("", &out)); code != 0 {
		t.Fatalf("table: exit %d; stderr:\n%s", code, out.stderr.String())
	}
	rows := lines(out.stdout.String())
	if len(rows) != 4 || !strings.HasPrefix(rows[0], "FINISHED") || !strings.Contains(rows[0], "ENVS OK/FAILED") {
		t.Fatalf("table:\n%s", out.stdout.String())
	}
	for i, want := range []string{"r2", "r4", "r6"} {
		if f := strings.Fields(rows[i+1]); len(f) < 7 || f[1] != "TeamA" || f[2] != want {
			t.Errorf("row %d: %q", i, rows[i+1])
		}
	}
	if !strings.Contains(rows[1], "failed") || !strings.HasSuffix(rows[1], "bad_request: APIOps said no") {
		t.Errorf("row of r2: %q", rows[1])
	}
	if at := strings.Index(rows[0], "STATUS"); rows[1][at:at+6] != "failed" || rows[3][at:at+9] != "succeeded" {
		t.Errorf("columns do not line up:\n%s", out.stdout.String())
	}
}

func TestResultsNewOnly(t *testing.T) {
	e := newTestEnv(t)
	e.store(t, "old-1", "P1", "keystore.delete", messages.StatusSucceeded, "")

	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	ready := make(chan struct{})
	done := make(chan int)
	var out output
	go func() { done <- results(ctx, []string{"--count", "1"}, e.io("", &out), func() { close(ready) }) }()
	select {
	case <-ready:
	case code := <-done:
		t.Fatalf("exit %d before following; stderr:\n%s", code, out.stderr.String())
	}
	e.store(t, "new-1", "P1", "keystore.delete", messages.StatusSucceeded, "")
	if code := <-done; code != 0 || ids(t, out.stdout.String()) != "new-1" {
		t.Errorf("exit %d, stdout:\n%s", code, out.stdout.String())
	}

	// Without --count it runs until the context ends (SIGINT, SIGTERM), then exits 0.
	ready = make(chan struct{})
	out = output{}
	go func() { done <- results(ctx, []string{"--output", "table"}, e.io("", &out), func() { close(ready) }) }()
	<-ready
	cancel()
	if code := <-done; code != 0 || len(lines(out.stdout.String())) != 1 {
		t.Errorf("exit %d, stdout:\n%s", code, out.stdout.String())
	}
}

func TestResultsOfSubmit(t *testing.T) {
	e := newTestEnv(t)
	fakeworker.Start(t, e.nc, fakeworker.Options{})
	var out output
	if code := Submit(testContext(t), []string{"--output", "json", rotationFile}, e.io("", &out)); code != 0 {
		t.Fatalf("submit: exit %d; stderr:\n%s", code, out.stderr.String())
	}
	submitted := ids(t, out.stdout.String())
	out = output{}
	args := []string{"--all", "--correlation-id", "rotation-2026-11-22", "--count", "11"}
	if code := Results(testContext(t), args, e.io("", &out)); code != 0 || ids(t, out.stdout.String()) != submitted {
		t.Errorf("exit %d, results %q, want %q", code, ids(t, out.stdout.String()), submitted)
	}
}

func TestResultsErrors(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		args   []string
		url    string
		stderr string
	}{
		{[]string{"--type", "keystore.frobnicate"}, "", `--type "keystore.frobnicate" is not a command type`},
		{[]string{"--type", "credential.>.set"}, "", "> must be the last token"},
		{[]string{"--type", "credential.key*.set"}, "", "a wildcard must be a whole token"},
		{[]string{"--status", "succeeded,done"}, "", `unknown status "done"`},
		{[]string{"--project", "a.b"}, "", `--project "a.b"`},
		{[]string{"--output", "xml"}, "", `--output "xml"`},
		{[]string{"--count", "-1"}, "", "--count -1"},
		{[]string{"extra"}, "", `unexpected argument "extra"`},
		{[]string{"--stream", "NOPE"}, "", "apiopsctl results: follow stream NOPE: "},
		{nil, "nats://127.0.0.1:1", "apiopsctl results: connect to nats://127.0.0.1:1: "},
	} {
		e.vars["NATS_URL"] = e.url
		if tc.url != "" {
			e.vars["NATS_URL"] = tc.url
		}
		var out output
		if code := Results(testContext(t), tc.args, e.io("", &out)); code != 1 || !strings.Contains(out.stderr.String(), tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q, want 1 and %q", tc.args, code, out.stderr.String(), tc.stderr)
		}
	}
}

// TestResultsTableNeverCutsAnID: the table's columns have fixed widths, as rows come
// one at a time; an id longer than its column wraps within it, whole, and the other
// columns stay in line.
func TestResultsTableNeverCutsAnID(t *testing.T) {
	e := newTestEnv(t)
	long := strings.Repeat("x", messages.MaxIDLength)
	want := []string{"rotation-20261122T101500Z:step-2", "rotation-20261122T101500Z:step-12", long, "short-1"}
	for _, id := range want {
		e.store(t, id, "MyProject", "credential.truststore.set", messages.StatusFailed, "")
	}
	var out output
	if code := Results(testContext(t), []string{"--all", "--output", "table", "--count", "4"}, e.io("", &out)); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	table := lines(out.stdout.String())
	if got := columnCells(table, "ID", "TYPE"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("ids %q, want %q; table:\n%s", got, want, out.stdout.String())
	}
	statusAt := strings.Index(table[0], "STATUS")
	for _, line := range table[1:] {
		if strings.Contains(line, "…") {
			t.Errorf("a cell is cut: %q", line)
		}
		if first := strings.TrimSpace(line[:20]) != ""; first && !strings.HasPrefix(line[statusAt:], "failed ") || !first && len(line) > statusAt {
			t.Errorf("STATUS not in line: %q", line) // a continuation line holds only the wrapped cell
		}
	}
	// The suffix of a wrapped plan step's id starts a line of its own.
	if !strings.Contains(out.stdout.String(), "\n"+strings.Repeat(" ", strings.Index(table[0], "ID"))+":step-12\n") {
		t.Errorf("table:\n%s", out.stdout.String())
	}
}

// columnCells rebuilds the cells of column col, followed by column next, of a table
// whose cells may wrap within their column: a line with a next cell starts a row,
// a line without one continues the row before it.
func columnCells(table []string, col, next string) []string {
	at, end := strings.Index(table[0], col), strings.Index(table[0], next)
	var cells []string
	for _, line := range table[1:] {
		piece := ""
		if len(line) > at {
			piece = strings.TrimSpace(line[at:min(len(line), end)])
		}
		if len(line) > end && strings.TrimSpace(line[end:]) != "" || len(cells) == 0 {
			cells = append(cells, piece)
		} else {
			cells[len(cells)-1] += piece
		}
	}
	return cells
}

func TestWrapCell(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 8, "short"},
		{"exactly8", 8, "exactly8"},
		{"rotation-20261122T101500Z:step-2", 16, "rotation-|20261122T101500Z|:step-2"},
		{"rotation-20261122T101500Z:step-2", 28, "rotation-20261122T101500Z|:step-2"},
		{"abcdefghijkl", 5, "abcde|fghij|kl"},
		{"a:replay-1:replay-2", 12, "a:replay-1|:replay-2"},
		{"succeeded (stored result)", 9, "succeeded|(stored|result)"},
	} {
		if got := strings.Join(wrapCell(tc.s, tc.n), "|"); got != tc.want {
			t.Errorf("wrapCell(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

// TestResultsTableMarksStoredResult: a result answered from the worker's record
// ("replayed": true) reads "(stored result)" under its STATUS, within the column.
func TestResultsTableMarksStoredResult(t *testing.T) {
	r := &messages.Result{ID: "rot-1:step-2", Project: "MyProject", Type: "credential.truststore.set", Status: messages.StatusSucceeded, Attempts: 1, Replayed: true}
	header, table := tableRow(resultsHeader), lines(tableRow(resultRow(r)))
	status := strings.Index(header, "STATUS")
	if len(table) != 3 || !strings.HasPrefix(table[0][status:], "succeeded  1") {
		t.Fatalf("rows:\n%s\n%s", header, strings.Join(table, "\n"))
	}
	for i, want := range []string{"(stored", "result)"} {
		if got := table[i+1]; strings.TrimSpace(got[:status]) != "" || got[status:] != want {
			t.Errorf("continuation %d %q, want %q under STATUS", i+1, got, want)
		}
	}
	r.Replayed = false
	if got := tableRow(resultRow(r)); strings.Contains(got, "stored") || strings.Contains(got, "\n") {
		t.Errorf("a result that ran: %q", got)
	}
}
