package ctl

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/internal/testkit/workertest"
	"github.com/apiops-worker/apiops-worker/internal/tracecontext"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// TestDeadLetterListReplayPurge runs the real worker against the simulator, makes
// three commands fail, and lists, replays and purges their dead letters.
func TestDeadLetterListReplayPurge(t *testing.T) {
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	_, apiURL, token := workertest.Simulator(t, "../../../testdata/apiops-seed.json")
	client, _ := apiops.New(apiURL, apiops.StaticToken(token))
	w, err := worker.New(nc, client, worker.Config{ManageStreams: true, RetryInitial: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- w.Run(ctx) }()
	defer func() { cancel(); <-stopped }()

	results, _ := nc.SubscribeSync("apiops.result.>")
	js, _ := jetstream.New(nc)
	publish := func(subject, body string) {
		t.Helper()
		if _, err := js.Publish(testContext(t), subject, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	var resultHeader nats.Header // the last result's
	awaitResult := func(id string) messages.Result {
		t.Helper()
		for {
			msg, err := results.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("no result for %s: %v", id, err)
			}
			var r messages.Result
			_ = json.Unmarshal(msg.Data, &r)
			if r.ID == id {
				resultHeader = msg.Header
				return r
			}
		}
	}
	// Fails now: trust-2027 does not exist yet.
	publish("apiops.cmd.MyProject.credential.truststore.set", `{"id":"early","correlationId":"rot-7","params":{"username":"api-user","keystoreName":"trust-2027"}}`)
	if r := awaitResult("early"); r.Status != messages.StatusFailed {
		t.Fatalf("early: %+v", r)
	}
	// Fails and holds secrets: trust-2025 exists.
	example, _ := os.ReadFile("../../../testdata/commands/keystore.create.json")
	publish("apiops.cmd.MyProject.keystore.create", strings.Replace(strings.Replace(string(example), `"trust-2027"`, `"trust-2025"`, 1), "example-keystore-create", "dup-create", 1))
	if r := awaitResult("dup-create"); r.Status != messages.StatusFailed {
		t.Fatalf("dup-create: %+v", r)
	}
	// Rejected, no id.
	publish("apiops.cmd.MyProject.keystore.delete", `{"params":{"keystoreName":"x"}}`)
	awaitResult("")

	e := &testEnv{url: srv.ClientURL(), nc: nc, js: js, vars: map[string]string{"NATS_URL": srv.ClientURL()}}
	var out output
	if code := DLQ(testContext(t), []string{"list", "--output", "json"}, e.io("", &out)); code != 0 {
		t.Fatalf("list: exit %d: %s", code, out.stderr.String())
	}
	listed := lines(out.stdout.String())
	if len(listed) != 3 {
		t.Fatalf("listed %d:\n%s", len(listed), out.stdout.String())
	}
	var first deadLetter
	_ = json.Unmarshal([]byte(listed[0]), &first)
	if first.Headers.Get(messages.HeaderCommandID) != "early" || first.Headers.Get(messages.HeaderErrorCode) != "bad_request" || first.Subject != "apiops.dlq.MyProject.credential.truststore.set" {
		t.Errorf("first dead letter %s", listed[0])
	}
	if strings.Contains(out.stdout.String(), "changeit") {
		t.Error("a dead letter holds a password")
	}
	out = output{}
	DLQ(testContext(t), []string{"list", "--status", "failed"}, e.io("", &out))
	if table := out.stdout.String(); len(lines(table)) != 3 || !strings.Contains(table, "dup-create") || !strings.Contains(table, "yes") {
		t.Errorf("table:\n%s", table)
	}
	// The rejection names the field to fix; the worker keeps it in Apiops-Error-Field,
	// and the table shows it.
	out = output{}
	DLQ(testContext(t), []string{"list", "--status", "rejected"}, e.io("", &out))
	if table := lines(out.stdout.String()); len(table) != 2 || !strings.HasSuffix(table[1], "invalid_command: is required (id)") {
		t.Errorf("the rejection's field is not shown:\n%s", out.stdout.String())
	}

	// Now trust-2027 exists, so the first command can succeed when replayed.
	createLine, _ := os.ReadFile("../../../testdata/commands/keystore.create.json")
	publish("apiops.cmd.MyProject.keystore.create", string(createLine))
	awaitResult("example-keystore-create")
	// Another project squats the replay's predictable Nats-Msg-Id first: the replay
	// must still reach the worker.
	squat := nats.NewMsg("apiops.cmd.TeamA.credential.truststore.set")
	squat.Header.Set(messages.HeaderMsgID, messages.MsgID("MyProject", "early:replay-1"))
	squat.Data = []byte(`{"id":"squat-1","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`)
	if _, err := js.PublishMsg(testContext(t), squat); err != nil {
		t.Fatal(err)
	}
	awaitResult("squat-1")
	out = output{}
	// The operator's trace (apiopsctl reads it from TRACEPARENT) goes with the replay.
	const operatorTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traced := tracecontext.FromEnvironment(testContext(t), func(k string) string { return map[string]string{"TRACEPARENT": operatorTrace}[k] })
	if code := DLQ(traced, []string{"replay", "--all"}, e.io("", &out)); code != 2 {
		t.Fatalf("replay: exit %d, want 2 (two refused): %s %s", code, out.stdout.String(), out.stderr.String())
	}
	if !strings.Contains(out.stderr.String(), "redacted") || !strings.Contains(out.stderr.String(), "no valid id") {
		t.Errorf("refusals not explained:\n%s", out.stderr.String())
	}
	r := awaitResult("early:replay-1")
	if r.Status != messages.StatusSucceeded || r.CorrelationID != "rot-7" {
		t.Errorf("replayed result %+v", r)
	}
	if h := resultHeader.Get(tracecontext.HeaderTraceParent); h != operatorTrace {
		t.Errorf("the replay's result carries traceparent %q, want the operator's %q", h, operatorTrace)
	}
	out = output{}
	DLQ(testContext(t), []string{"list", "--output", "json"}, e.io("", &out))
	if left := lines(out.stdout.String()); len(left) != 2 || strings.Contains(out.stdout.String(), `"early"`) {
		t.Errorf("after replay:\n%s", out.stdout.String())
	}
	out = output{}
	if code := DLQ(testContext(t), []string{"purge", "--all"}, e.io("", &out)); code != 0 {
		t.Fatalf("purge: exit %d %s", code, out.stderr.String())
	}
	dead, _ := js.Stream(testContext(t), "APIOPS_DEAD")
	if info, _ := dead.Info(testContext(t)); info.State.Msgs != 0 {
		t.Errorf("%d dead letters after purge", info.State.Msgs)
	}
	out = output{}
	if code := DLQ(testContext(t), []string{"replay"}, e.io("", &out)); code != 1 || !strings.Contains(out.stderr.String(), "--seq, --id or --all") {
		t.Errorf("replay without a selection: exit %d %s", code, out.stderr.String())
	}
}

func TestReplayID(t *testing.T) {
	for in, want := range map[string]string{"a": "a:replay-1", "a:replay-1": "a:replay-2", "a:replay-9:x": "a:replay-9:x:replay-1", "x:replay-": "x:replay-:replay-1"} {
		if got := replayID(in); got != want {
			t.Errorf("replayID(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDeadLetterListShowsTheField: the ERROR cell names the field from
// Apiops-Error-Field, kept whole when a long message is shortened; a dead letter of an
// older worker, without the header, shows code and message as before.
func TestDeadLetterListShowsTheField(t *testing.T) {
	e := newTestEnv(t)
	ctx := testContext(t)
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "APIOPS_DEAD", Subjects: []string{messages.Subjects{}.AllDeadLetters()}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	const field = "params.keyStoreEnvironmentList[0].keyStoreType"
	long := strings.Repeat("much to say ", 20)
	for _, h := range []map[string]string{
		{messages.HeaderCommandID: "with-field", messages.HeaderStatus: "rejected", messages.HeaderErrorCode: "invalid_command", messages.HeaderError: `must be one of JKS, PKCS12, not "PEM"`, messages.HeaderErrorField: field},
		{messages.HeaderCommandID: "long-message", messages.HeaderStatus: "rejected", messages.HeaderErrorCode: "invalid_command", messages.HeaderError: long, messages.HeaderErrorField: field},
		{messages.HeaderCommandID: "older", messages.HeaderStatus: "failed", messages.HeaderErrorCode: "bad_request", messages.HeaderError: "APIOps said no"},
		{messages.HeaderCommandID: "code-only", messages.HeaderStatus: "rejected", messages.HeaderErrorCode: "invalid_command", messages.HeaderErrorField: "id"},
	} {
		m := nats.NewMsg(messages.Subjects{}.DeadLetter("MyProject", "keystore.create"))
		for k, v := range h {
			m.Header.Set(k, v)
		}
		m.Data = []byte(`{"id":"` + h[messages.HeaderCommandID] + `"}`)
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var out output
	if code := DLQ(ctx, []string{"list"}, e.io("", &out)); code != 0 {
		t.Fatalf("exit %d: %s", code, out.stderr.String())
	}
	rows := lines(out.stdout.String())
	if len(rows) != 5 {
		t.Fatalf("table:\n%s", out.stdout.String())
	}
	for i, want := range []string{
		`invalid_command: must be one of JKS, PKCS12, not "PEM" (` + field + `)`,
		"… (" + field + ")",
		"bad_request: APIOps said no",
		"invalid_command (id)",
	} {
		if !strings.HasSuffix(rows[i+1], want) {
			t.Errorf("row %d: %q, want it to end with %q", i+1, rows[i+1], want)
		}
	}
	if strings.Contains(rows[3], "(") {
		t.Errorf("a dead letter without the field shows one: %q", rows[3])
	}
	if !strings.Contains(rows[2], "invalid_command: much to say") || strings.Contains(rows[2], long) {
		t.Errorf("the long message is not shortened: %q", rows[2])
	}
}
