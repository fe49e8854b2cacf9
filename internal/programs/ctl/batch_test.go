package ctl

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/internal/testkit/fakeworker"
	"github.com/apiops-worker/apiops-worker/messages"
)

// failOn makes the fake worker's results for ids failed with their error codes.
func failOn(codes map[string]string) func(*messages.Command, *messages.Result) bool {
	return func(cmd *messages.Command, r *messages.Result) bool {
		if code, ok := codes[cmd.ID]; ok {
			r.Status, r.DeploymentResult = messages.StatusFailed, nil
			r.Error = &messages.Error{Code: code, Message: "no luck with " + cmd.ID}
		}
		return true
	}
}

// TestSubmitFailedOnly: --failed-only shows only the commands that did not succeed,
// in input order, and the summary counts every command, by status and error code.
func TestSubmitFailedOnly(t *testing.T) {
	e := newTestEnv(t)
	fakeworker.Start(t, e.nc, fakeworker.Options{Outcome: failOn(map[string]string{
		"rot-2026-11-22-0002": "apiops_404", "rot-2026-11-22-0005": "retries_exhausted", "rot-2026-11-22-0009": "apiops_404",
	})})
	input := strings.Join(append(rotationLines(t), `{"id":"bad-1","type":"keystore.delete","project":"MyProject","params":{}}`), "\n")
	const want = "12 commands: 8 succeeded, 3 failed (2 apiops_404, 1 retries_exhausted), 1 rejected (invalid_command)"

	var out output
	if code := Submit(testContext(t), []string{"--failed-only", "-"}, e.io(input, &out)); code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, out.stderr.String())
	}
	rows := lines(out.stdout.String())
	if len(rows) != 1+4+1 || !strings.HasPrefix(rows[0], "ID") {
		t.Fatalf("table:\n%s", out.stdout.String())
	}
	for i, id := range []string{"rot-2026-11-22-0002", "rot-2026-11-22-0005", "rot-2026-11-22-0009", "bad-1"} {
		if !strings.HasPrefix(rows[i+1], id+" ") {
			t.Errorf("row %d: %q, want %s's", i+1, rows[i+1], id)
		}
	}
	if rows[5] != want {
		t.Errorf("summary %q, want %q", rows[5], want)
	}

	// JSON: the result lines of those that did not succeed; the summary on stderr. The
	// stored results come back, within the duplicate window, marked so.
	out = output{}
	if code := Submit(testContext(t), []string{"--failed-only", "--output", "json", "-"}, e.io(input, &out)); code != 2 {
		t.Fatalf("json: exit %d; stderr:\n%s", code, out.stderr.String())
	}
	if got := ids(t, out.stdout.String()); got != "rot-2026-11-22-0002 rot-2026-11-22-0005 rot-2026-11-22-0009 bad-1" {
		t.Errorf("json: results of %s", got)
	}
	if got := strings.Count(out.stdout.String(), `"replayed":true`); got != 3 {
		t.Errorf("json: %d results marked replayed, want the 3 stored ones:\n%s", got, out.stdout.String())
	}
	if !strings.Contains(out.stderr.String(), want+"; 11 stored results (not run again)\n") {
		t.Errorf("json: stderr lacks the summary:\n%s", out.stderr.String())
	}

	// All succeeded: no table, only the summary.
	out = output{}
	if code := Submit(testContext(t), []string{"--failed-only", "-"}, e.io(rotationLines(t)[0], &out)); code != 0 {
		t.Fatalf("all succeeded: exit %d; stderr:\n%s", code, out.stderr.String())
	}
	if got := out.stdout.String(); got != "1 command: 1 succeeded; 1 stored result (not run again)\n" {
		t.Errorf("all succeeded: stdout %q", got)
	}
}

// TestSubmitMarksStoredResults: with the real worker, a command whose id had finished
// is answered from its stored result, "replayed": submit's table marks its STATUS
// "(stored result)" and the summary counts them; the commands that ran are not
// marked. With --output json the result lines carry "replayed": true as the worker
// sent them.
func TestSubmitMarksStoredResults(t *testing.T) {
	e, sim := newWorkerEnv(t)
	line := func(id, user string) string {
		return `{"id":"` + id + `","type":"credential.truststore.set","project":"MyProject","params":{"username":"` + user + `","keystoreName":"trust-2026"}}`
	}
	first := line("again-1", "partner-a")
	var out output
	if code := Submit(testContext(t), []string{"-"}, e.io(first, &out)); code != 0 {
		t.Fatalf("first: exit %d; stderr:\n%s", code, out.stderr.String())
	}
	if strings.Contains(out.stdout.String(), "stored") {
		t.Errorf("first: a result that ran is marked stored:\n%s", out.stdout.String())
	}
	requests := len(sim.Requests())

	out = output{}
	if code := Submit(testContext(t), []string{"-"}, e.io(first+"\n"+line("fresh-1", "partner-b"), &out)); code != 0 {
		t.Fatalf("again: exit %d; stderr:\n%s", code, out.stderr.String())
	}
	rows := lines(out.stdout.String())
	if len(rows) != 4 {
		t.Fatalf("again: table:\n%s", out.stdout.String())
	}
	status := strings.Index(rows[0], "STATUS")
	if got := rows[1][status:]; !strings.HasPrefix(rows[1], "again-1 ") || !strings.HasPrefix(got, "succeeded (stored result) ") {
		t.Errorf("again: the stored result's row %q", rows[1])
	}
	if !strings.HasPrefix(rows[2], "fresh-1 ") || strings.Contains(rows[2], "stored") {
		t.Errorf("again: the row of the command that ran %q", rows[2])
	}
	if got, want := rows[3], "2 commands: 2 succeeded; 1 stored result (not run again)"; got != want {
		t.Errorf("again: summary %q, want %q", got, want)
	}
	if n := len(sim.Requests()) - requests; n != 1 {
		t.Errorf("again: %d requests reached APIOps, want fresh-1's one", n)
	}

	out = output{}
	if code := Submit(testContext(t), []string{"--output", "json", "-"}, e.io(first, &out)); code != 0 {
		t.Fatalf("json: exit %d; stderr:\n%s", code, out.stderr.String())
	}
	var r messages.Result
	if err := json.Unmarshal(out.stdout.Bytes(), &r); err != nil || r.ID != "again-1" || !r.Replayed {
		t.Errorf("json: %s (%v), want the stored result, replayed", out.stdout.String(), err)
	}
	if !strings.Contains(out.stderr.String(), "1 command: 1 succeeded; 1 stored result (not run again)\n") {
		t.Errorf("json: stderr:\n%s", out.stderr.String())
	}
}

func TestResultSummary(t *testing.T) {
	failed := func(code string) *messages.Result {
		r := &messages.Result{Status: messages.StatusFailed}
		if code != "" {
			r.Error = &messages.Error{Code: code}
		}
		return r
	}
	var batch []*messages.Result
	for range 2994 {
		batch = append(batch, &messages.Result{Status: messages.StatusSucceeded})
	}
	batch = append(batch, failed("retries_exhausted"), failed("apiops_404"), failed("apiops_404"), failed("retries_exhausted"), failed("apiops_404"), failed("apiops_404"))
	for _, tc := range []struct {
		results []*messages.Result
		missing int
		want    string
	}{
		{batch, 0, "3,000 commands: 2,994 succeeded, 6 failed (4 apiops_404, 2 retries_exhausted)"},
		{batch[2990:], 2, "12 commands: 4 succeeded, 6 failed (4 apiops_404, 2 retries_exhausted), 2 without a result"},
		{[]*messages.Result{failed("b"), failed("a"), failed("")}, 0, "3 commands: 3 failed (1 a, 1 b, 1 without a code)"},
		{[]*messages.Result{failed("bad_request"), {Status: messages.StatusPartial, Error: &messages.Error{Code: "deploy_failed"}}}, 0,
			"2 commands: 1 partial (deploy_failed), 1 failed (bad_request)"},
		{[]*messages.Result{failed("")}, 0, "1 command: 1 failed"},
		{nil, 0, "0 commands"},
	} {
		if got := resultSummary(tc.results, tc.missing); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

func TestProgressRate(t *testing.T) {
	for _, tc := range []struct {
		done, total int
		elapsed     time.Duration
		want        string
	}{
		{0, 11, 5 * time.Second, ""},
		{5, 11, 500 * time.Millisecond, ""},
		{5, 11, 2 * time.Second, "  2.5/s  3s left"},
		{11, 11, 2 * time.Second, "  5.5/s"},
		{1204, 3000, 3 * time.Second, "  401/s  5s left"},
		{12000, 3_000_000, 10 * time.Second, "  1,200/s  41m30s left"},
		{1, 10_000, 2 * time.Second, "  0.5/s  5h33m left"},
	} {
		if got := progressRate(tc.done, tc.total, tc.elapsed); got != tc.want {
			t.Errorf("progressRate(%d, %d, %v) = %q, want %q", tc.done, tc.total, tc.elapsed, got, tc.want)
		}
	}
}

// signalWriter tells of every write, so that a test can wait for a redraw.
type signalWriter struct {
	writes chan string
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.writes <- string(p)
	return len(p), nil
}

// TestProgressLine: on a terminal the line shows the rate and the time left, and is
// redrawn while no result comes, so that they follow the wait.
func TestProgressLine(t *testing.T) {
	w := &signalWriter{writes: make(chan string, 16)}
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var clock struct {
		sync.Mutex
		now time.Time
	}
	set := func(d time.Duration) { clock.Lock(); clock.now = start.Add(d); clock.Unlock() }
	now := func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.now }
	set(2 * time.Second)
	p := &progress{w: w, total: 11, on: true, start: start, now: now}
	p.draw(5)
	if got := <-w.writes; got != "\r\x1b[K[=========>          ] 5/11 results  2.5/s  3s left" {
		t.Errorf("line %q", got)
	}
	set(10 * time.Second) // no result for 8s: a lower rate, more time left
	p.redrawEvery(time.Millisecond)
	if got := <-w.writes; got != "\r\x1b[K[=========>          ] 5/11 results  0.5/s  12s left" {
		t.Errorf("redrawn %q", got)
	}
	go func() { // finish waits for the redrawing to stop, which may be writing
		for range w.writes {
		}
	}()
	p.finish()
	close(w.writes)
}

// largeKeystoreLine is a valid keystore.create line of about size bytes: a real
// truststore for as many environments as it takes.
func largeKeystoreLine(t *testing.T, id string, size int) string {
	t.Helper()
	data, err := os.ReadFile("../../../testdata/keystores/trust-2027.jks")
	if err != nil {
		t.Fatal(err)
	}
	file := base64.StdEncoding.EncodeToString(data)
	var envs []string
	for i := 0; len(envs)*(len(file)+100) < size; i++ {
		envs = append(envs, fmt.Sprintf(`{"environmentName":"env-%04d","file":"%s","password":"changeit","keyStoreType":"JKS"}`, i, file))
	}
	return `{"id":"` + id + `","type":"keystore.create","project":"MyProject","params":{"name":"trust-` + id + `","keyStoreEnvironmentList":[` + strings.Join(envs, ",") + `]}}`
}

// TestSubmitRefusesTooLarge: a command larger than the workers announce they take is
// not published but rejected on its own line, naming its size and the limit; the
// others go ahead.
func TestSubmitRefusesTooLarge(t *testing.T) {
	e := newTestEnv(t)
	w := fakeworker.Start(t, e.nc, fakeworker.Options{})
	fakeworker.AnnounceMetadata(t, e.nc, "", map[string]string{"max_command_size": "32768"})
	input := append(rotationLines(t), largeKeystoreLine(t, "big-1", 40<<10))
	var out output
	if code := Submit(testContext(t), []string{"-"}, e.io(strings.Join(input, "\n"), &out)); code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, out.stderr.String())
	}
	rows := lines(out.stdout.String())
	if len(rows) != 1+12+1 {
		t.Fatalf("table:\n%s", out.stdout.String())
	}
	if big := rows[12]; !strings.HasPrefix(big, "big-1 ") || !strings.Contains(big, "rejected") ||
		!strings.Contains(big, "invalid_command: command too large: ") || !strings.HasSuffix(big, " bytes, over the 32,768 (32 KiB) the workers' --max-command-size allows") {
		t.Errorf("row %q", big)
	}
	if got, want := rows[13], "12 commands: 11 succeeded, 1 rejected (invalid_command)"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if !strings.Contains(out.stderr.String(), "line 12: invalid_command: command too large: ") {
		t.Errorf("stderr does not name the line:\n%s", out.stderr.String())
	}
	if n := len(w.Received()); n != 11 {
		t.Errorf("worker received %d commands, want 11", n)
	}
	if strings.Contains(out.stdout.String()+out.stderr.String(), "changeit") {
		t.Error("output shows a password")
	}
}

// TestSubmitRefusesTooLargeByDefault: without a worker announcing its limit, the
// workers' default holds, and NATS's bare "maximum payload exceeded" is never the
// answer.
func TestSubmitRefusesTooLargeByDefault(t *testing.T) {
	e := newTestEnv(t)
	var out output
	code := Submit(testContext(t), []string{"--output", "json", "-"}, e.io(largeKeystoreLine(t, "huge-1", 600<<10), &out))
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, out.stderr.String())
	}
	var r messages.Result
	if err := json.Unmarshal(bytes.TrimSpace(out.stdout.Bytes()), &r); err != nil || r.ID != "huge-1" || r.Status != messages.StatusRejected ||
		!strings.HasSuffix(r.Error.Message, "over the 524,288 (512 KiB) the workers' default --max-command-size allows") {
		t.Errorf("result %s (%v)", out.stdout.String(), err)
	}
	if strings.Contains(out.stderr.String(), "maximum payload") {
		t.Errorf("stderr:\n%s", out.stderr.String())
	}
}
