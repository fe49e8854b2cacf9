package ctl

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/internal/testkit/fakeworker"
	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
	"github.com/apiops-worker/apiops-worker/messages"
)

const (
	rotationFile = "../../../testdata/rotation.jsonl"
	password     = "pw-s3cret-7f3a"
)

// keystoreFile is a PKCS12 truststore that opens with password: submit and validate
// open keystores before anything is published.
var keystoreFile = keystorestest.Base64(keystorestest.Spec{Password: password, TrustStore: true})

func rotationLines(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(rotationFile)
	if err != nil {
		t.Fatal(err)
	}
	return lines(string(data))
}

// partialOn makes the fake worker's result for id partial: staging failed.
func partialOn(id string) func(*messages.Command, *messages.Result) bool {
	return func(cmd *messages.Command, r *messages.Result) bool {
		if cmd.ID == id {
			r.Status = messages.StatusPartial
			r.DeploymentResult.Success = false
			r.DeploymentResult.EnvironmentResults[1] = messages.EnvironmentResult{EnvironmentName: "staging", Message: "Gateway timeout"}
			r.Error = &messages.Error{Code: messages.CodeDeployFailed, Message: "Deployment completed with errors"}
		}
		return true
	}
}

func TestSubmitTable(t *testing.T) {
	e := newTestEnv(t)
	w := fakeworker.Start(t, e.nc, fakeworker.Options{Outcome: partialOn("rot-2026-11-22-0004")})

	input := append(rotationLines(t),
		`{"id":"bad-0001","type":"keystore.create","project":"MyProject","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"production","file":"`+keystoreFile+`","password":"`+password+`","keyStoreType":"PEM"}]}}`,
		``,
		`{"id":"reply-0001","type":"keystore.delete","project":"TeamA","replyTo":"_INBOX.TeamA.elsewhere","params":{"keystoreName":"old"}}`,
	)
	var out output
	code := Submit(testContext(t), []string{"--timeout", "20s", "-"}, e.io(strings.Join(input, "\n"), &out))
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, out.stderr.String())
	}

	rows := lines(out.stdout.String())
	if len(rows) != 1+13+1 {
		t.Fatalf("%d lines:\n%s", len(rows), out.stdout.String())
	}
	cols := regexp.MustCompile(`\s{2,}`)
	if got := cols.Split(rows[0], -1); strings.Join(got, "|") != "ID|TYPE|STATUS|ATTEMPTS|ENVS OK/FAILED|ERROR" {
		t.Errorf("header %q", rows[0])
	}
	want := map[int]string{ // row (input order) => its cells
		0:  "rot-2026-11-22-0001|keystore.create|succeeded|1|2/0",
		3:  "rot-2026-11-22-0004|credential.truststore.set|partial|1|1/1|deploy_failed: Deployment completed with errors",
		7:  "rot-2026-11-22-0008|proxy.mtls.update|succeeded|1|-",
		11: "bad-0001|keystore.create|rejected|0|-|invalid_command: must be one of JKS, PKCS12, not \"PEM\" (params.keyStoreEnvironmentList[0].keyStoreType)",
		12: "reply-0001|keystore.delete|succeeded|1|2/0",
	}
	for i, row := range rows[1:14] {
		cells := strings.Join(cols.Split(strings.TrimSpace(row), -1), "|")
		if w, ok := want[i]; ok && !strings.HasPrefix(cells, w) {
			t.Errorf("row %d: %q, want %q", i, cells, w)
		}
	}
	// The columns line up.
	statusAt := strings.Index(rows[0], "STATUS")
	for _, row := range rows[1:14] {
		if s := row[statusAt:]; !strings.HasPrefix(s, "succeeded") && !strings.HasPrefix(s, "partial") && !strings.HasPrefix(s, "rejected") {
			t.Errorf("STATUS not aligned in %q", row)
		}
	}
	if got, want := rows[14], "13 commands: 11 succeeded, 1 partial (deploy_failed), 1 rejected (invalid_command)"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if !strings.Contains(out.stderr.String(), "line 12: invalid_command") {
		t.Errorf("stderr does not name the invalid line:\n%s", out.stderr.String())
	}
	if all := out.stdout.String() + out.stderr.String(); strings.Contains(all, password) || strings.Contains(all, keystoreFile) {
		t.Errorf("output shows a secret:\n%s", all)
	}

	received := w.Received()
	if len(received) != 12 {
		t.Errorf("worker received %d commands, want 12", len(received))
	}
	for _, m := range received {
		if strings.Contains(string(m.Data), "bad-0001") {
			t.Errorf("the invalid line was published: %s", m.Subject)
		}
		var body struct{ Project, ReplyTo string }
		if err := json.Unmarshal(m.Data, &body); err != nil || !strings.HasPrefix(body.ReplyTo, messages.ReplyInbox(body.Project)) || body.ReplyTo == "_INBOX.TeamA.elsewhere" {
			t.Errorf("%s published with replyTo %q, want the submit inbox", m.Header.Get(messages.HeaderMsgID), body.ReplyTo)
		}
	}
}

func TestSubmitJSONAllSucceeded(t *testing.T) {
	e := newTestEnv(t)
	fakeworker.Start(t, e.nc, fakeworker.Options{})
	var out output
	// Flags may follow the file.
	code := Submit(testContext(t), []string{rotationFile, "--output", "json"}, e.io("", &out))
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, out.stderr.String())
	}
	want := rotationLines(t)
	got := lines(out.stdout.String())
	if len(got) != len(want) {
		t.Fatalf("%d result lines, want %d:\n%s", len(got), len(want), out.stdout.String())
	}
	for i, line := range got {
		var r messages.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		cmd, _ := messages.DecodeLine([]byte(want[i]))
		if r.ID != cmd.ID || r.Status != messages.StatusSucceeded || r.CorrelationID != "rotation-2026-11-22" {
			t.Errorf("line %d: %s, want the result of %s", i, line, cmd.ID)
		}
	}
	if !strings.Contains(out.stderr.String(), "11 commands: 11 succeeded") {
		t.Errorf("stderr:\n%s", out.stderr.String())
	}

	// The same file again, within the duplicate window: the stored results come back.
	out = output{}
	if code := Submit(testContext(t), []string{"--output=json", rotationFile}, e.io("", &out)); code != 0 || len(lines(out.stdout.String())) != 11 {
		t.Errorf("again: exit %d, stdout:\n%s\nstderr:\n%s", code, out.stdout.String(), out.stderr.String())
	}
}

func TestSubmitTimeout(t *testing.T) {
	e := newTestEnv(t)
	fakeworker.Start(t, e.nc, fakeworker.Options{Outcome: func(cmd *messages.Command, _ *messages.Result) bool {
		return cmd.ID != "rot-2026-11-22-0003" // lost
	}})
	var out output
	code := Submit(testContext(t), []string{"--timeout", "500ms", rotationFile}, e.io("", &out))
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, out.stderr.String())
	}
	rows := lines(out.stdout.String())
	if !strings.Contains(rows[3], "rot-2026-11-22-0003") || !strings.Contains(rows[3], "no result") || !strings.Contains(rows[3], "none within --timeout 500ms") {
		t.Errorf("row of the lost command: %q", rows[3])
	}
	if got, want := rows[len(rows)-1], "11 commands: 10 succeeded, 1 without a result"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if !strings.Contains(out.stderr.String(), "apiopsctl submit: 1 of 11 commands have no result within --timeout 500ms") {
		t.Errorf("stderr:\n%s", out.stderr.String())
	}
}

func TestSubmitErrors(t *testing.T) {
	e := newTestEnv(t)
	valid := `{"id":"e-1","type":"keystore.delete","project":"P","params":{"keystoreName":"k"}}`
	for _, tc := range []struct {
		name   string
		args   []string
		vars   map[string]string
		stdin  string
		code   int
		stderr string
	}{
		{"no file", nil, nil, "", 1, "want one FILE"},
		{"two files", []string{"a", "b"}, nil, "", 1, "want one FILE"},
		{"bad output", []string{"--output", "xml", "-"}, nil, valid, 1, `--output "xml"`},
		{"no password flag", []string{"--password", "x", "-"}, nil, valid, 1, "flag provided but not defined: -password"},
		{"missing file", []string{"/does/not/exist"}, nil, "", 1, "/does/not/exist"},
		{"bad prefix", []string{"--prefix", "a.*", "-"}, nil, valid, 1, "--prefix"},
		{"bad inbox prefix", []string{"-"}, map[string]string{"NATS_INBOX_PREFIX": "_INBOX.TeamA."}, valid, 1, `--inbox-prefix (NATS_INBOX_PREFIX) "_INBOX.TeamA."`},
		{"password without user", []string{"-"}, map[string]string{"NATS_PASSWORD": "hunter2"}, valid, 1, "NATS_PASSWORD is set but no user"},
		{"no server", []string{"-"}, map[string]string{"NATS_URL": "nats://ops:hunter2@127.0.0.1:1"}, valid, 1,
			"apiopsctl submit: connect to nats://ops:xxxxx@127.0.0.1:1: "},
		{"no stream", []string{"--prefix", "elsewhere", "--timeout", "10s", "-"}, nil, valid, 1, "no response from stream"},
		{"only invalid lines", []string{"-"}, map[string]string{"NATS_URL": "nats://127.0.0.1:1"}, "not json\n", 2, "line 1: invalid_json"},
		{"help", []string{"-h"}, nil, "", 0, "usage: apiopsctl submit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := e.vars
			e.vars = map[string]string{"NATS_URL": e.url}
			for k, v := range tc.vars {
				e.vars[k] = v
			}
			defer func() { e.vars = saved }()
			var out output
			if code := Submit(testContext(t), tc.args, e.io(tc.stdin, &out)); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if !strings.Contains(out.stderr.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, out.stderr.String())
			}
			if strings.Contains(out.stderr.String(), "hunter2") {
				t.Errorf("stderr shows the password:\n%s", out.stderr.String())
			}
		})
	}
}

func TestProgressBar(t *testing.T) {
	for _, tc := range []struct {
		done, total int
		want        string
	}{
		{0, 11, "[>                   ] 0/11 results"},
		{5, 11, "[=========>          ] 5/11 results"},
		{10, 11, "[==================> ] 10/11 results"},
		{11, 11, "[====================] 11/11 results"},
	} {
		if got := progressBar(tc.done, tc.total); got != tc.want {
			t.Errorf("progressBar(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
	var out output
	p := newProgress(&out.stderr, 3) // not a terminal: no bar
	p.draw(1)
	p.finish()
	if out.stderr.Len() != 0 {
		t.Errorf("progress drawn on a non-terminal: %q", out.stderr.String())
	}
}

func TestSubmitSequentialWaitsForEachResult(t *testing.T) {
	e := newTestEnv(t)
	commands, err := e.js.Stream(testContext(t), "APIOPS_COMMANDS")
	if err != nil {
		t.Fatal(err)
	}
	// The stream's last sequence as each command is handled: with --sequential, no
	// later command has been published yet (the handled one may still await its ack).
	var lastSeq []uint64
	fakeworker.Start(t, e.nc, fakeworker.Options{Outcome: func(*messages.Command, *messages.Result) bool {
		info, err := commands.Info(testContext(t))
		if err != nil {
			t.Error(err)
			return true
		}
		lastSeq = append(lastSeq, info.State.LastSeq)
		return true
	}})
	var out output
	if code := Submit(testContext(t), []string{"--sequential", "-"}, e.io(strings.Join(rotationLines(t), "\n"), &out)); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	if len(lastSeq) != len(rotationLines(t)) {
		t.Fatalf("handled %d commands", len(lastSeq))
	}
	for i, seq := range lastSeq {
		if seq != uint64(i+1) {
			t.Errorf("command %d was handled when %d commands had been published", i+1, seq)
		}
	}
}

// TestSubmitInboxPrefix: with NATS_INBOX_PREFIX, JetStream's acknowledgements come to
// that inbox, results still to a replyTo under _INBOX.<the command's project>. (the
// only place the worker sends them; the batch has two projects), and every command
// carries its project-scoped Nats-Msg-Id.
func TestSubmitInboxPrefix(t *testing.T) {
	e := newTestEnv(t)
	w := fakeworker.Start(t, e.nc, fakeworker.Options{})
	e.vars["NATS_INBOX_PREFIX"] = "_INBOX.TeamA"
	var out output
	if code := Submit(testContext(t), []string{rotationFile, "--output", "json"}, e.io("", &out)); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, out.stderr.String())
	}
	for _, m := range w.Received() {
		var body struct{ ID, Project, ReplyTo string }
		if err := json.Unmarshal(m.Data, &body); err != nil || !strings.HasPrefix(body.ReplyTo, "_INBOX."+body.Project+".") {
			t.Errorf("%s published with replyTo %q, want one under _INBOX.%s.", m.Subject, body.ReplyTo, body.Project)
		}
		if got := m.Header.Get(messages.HeaderMsgID); got != messages.MsgID(body.Project, body.ID) {
			t.Errorf("%s published with Nats-Msg-Id %q", m.Subject, got)
		}
	}
}
