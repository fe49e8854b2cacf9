package worker_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

func TestPartialDeployment(t *testing.T) {
	e := newEnv(t)
	e.sim.SetFaults(simulator.Faults{FailEnvironments: []string{"staging"}})
	e.start(nil)
	cmd := e.publishLine(readExample(t, "credential.truststore.set"))
	res := e.awaitResults(1, 10*time.Second)[cmd.ID]
	if res.Status != messages.StatusPartial || res.Error == nil || res.Error.Code != messages.CodeDeployFailed || res.Attempts != 1 {
		t.Fatalf("result %s", res.raw)
	}
	envs := res.DeploymentResult.EnvironmentResults
	if len(envs) != 2 || !envs[0].Success || envs[0].EnvironmentName != "production" || envs[1].Success || envs[1].Message != "Gateway timeout" {
		t.Errorf("per-environment detail %+v", envs)
	}
	dead := e.deadLetters()
	if len(dead) != 1 || dead[0].Headers().Get(messages.HeaderStatus) != "partial" || dead[0].Headers().Get(messages.HeaderErrorCode) != "deploy_failed" {
		t.Fatalf("dead letters %v", dead)
	}
}

func TestRejectedCorpusNeverReachesAPIOps(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	f, err := os.Open("../testdata/invalid-commands.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	published := 0
	var wantFields []string // the dead letters' Apiops-Error-Field
	for sc.Scan() {
		var tc struct{ Name, Project, Type, Command, Code, Field string }
		if err := json.Unmarshal(sc.Bytes(), &tc); err != nil {
			t.Fatal(err)
		}
		if !publishable(tc.Project) || !publishable(tc.Type) || strings.Contains(tc.Project, ".") {
			continue // such a subject cannot be published on; apiopsctl validate covers it
		}
		e.publish(tc.Project, tc.Type, "", []byte(tc.Command))
		published++
		wantFields = append(wantFields, tc.Field)
		for _, res := range e.awaitResults(1, 10*time.Second) {
			if res.Status != messages.StatusRejected || res.Attempts != 0 || res.Error == nil || res.Error.Code != tc.Code || res.Error.Field != tc.Field {
				t.Errorf("%s: result %s, want %s on %q", tc.Name, res.raw, tc.Code, tc.Field)
			}
			if res.Project != tc.Project || res.Type != tc.Type {
				t.Errorf("%s: result names %s/%s", tc.Name, res.Project, res.Type)
			}
			want := ""
			if res.ID != "" {
				want = messages.MsgID(res.Project, res.ID)
			}
			if id := res.header.Get(messages.HeaderMsgID); id != want {
				t.Errorf("%s: Nats-Msg-Id %q for id %q", tc.Name, id, res.ID)
			}
		}
	}
	if published < 80 {
		t.Fatalf("only %d corpus cases published", published)
	}
	if n := e.apiopsRequests(); n != 0 {
		t.Errorf("%d requests reached APIOps", n)
	}
	var fields []string
	for _, m := range e.deadLetters() {
		fields = append(fields, m.Headers().Get(messages.HeaderErrorField))
	}
	slices.Sort(fields)
	slices.Sort(wantFields)
	if !slices.Equal(fields, wantFields) {
		t.Errorf("dead letters' %s:\n%q\nwant the rejections' fields:\n%q", messages.HeaderErrorField, fields, wantFields)
	}
}

func publishable(token string) bool {
	return token != "" && token != "*" && token != ">" && strings.IndexFunc(token, func(r rune) bool { return r <= ' ' }) < 0
}

func TestExpired(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	cmd := e.publishLine(withField(t, readExample(t, "keystore.delete"), "notAfter", "2020-01-01T00:00:00Z"))
	res := e.awaitResults(1, 10*time.Second)[cmd.ID]
	if res.Status != messages.StatusExpired || res.Error.Code != messages.CodeExpired || res.Attempts != 0 {
		t.Fatalf("result %s", res.raw)
	}
	if e.apiopsRequests() != 0 {
		t.Error("an expired command reached APIOps")
	}
	if _, ok := e.sim.Keystore("MyProject", "legacy-2019"); !ok {
		t.Error("the expired delete ran")
	}
}

func TestDeadLettersAndRedaction(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	// trust-2025 exists already: APIOps refuses the create.
	line := bytes.Replace(readExample(t, "keystore.create"), []byte(`"name":"trust-2027"`), []byte(`"name":"trust-2025"`), 1)
	if bytes.Equal(line, readExample(t, "keystore.create")) {
		t.Fatal("example changed: cannot rename the keystore")
	}
	create := e.publishLine(line)
	missing := e.publishLine([]byte(`{"id":"no-such-user","type":"credential.truststore.set","project":"MyProject","params":{"username":"nobody","keystoreName":"trust-2026"}}`))
	results := e.awaitResults(2, 10*time.Second)
	for id, wantMsg := range map[string]string{
		create.ID:  "Keystore (name: trust-2025) is already exist! Try update operation if want to change its value.",
		missing.ID: "Credential (username: nobody) was not found!",
	} {
		res := results[id]
		if res.Status != messages.StatusFailed || res.Error.Code != "bad_request" || res.Error.Message != wantMsg || res.HTTPStatus != 400 || res.Attempts != 1 {
			t.Errorf("result %s", res.raw)
		}
	}
	dead := map[string]*nats.Msg{}
	for _, m := range e.deadLetters() {
		dead[m.Headers().Get(messages.HeaderCommandID)] = natsMsg(m)
	}
	d := dead[create.ID]
	if d == nil || d.Subject != "apiops.dlq.MyProject.keystore.create" {
		t.Fatalf("dead letters %v", dead)
	}
	want := map[string]string{
		messages.HeaderStatus: "failed", messages.HeaderErrorCode: "bad_request", messages.HeaderAttempts: "1",
		messages.HeaderOriginalSubject: "apiops.cmd.MyProject.keystore.create", messages.HeaderRedacted: "true",
		messages.HeaderError: "Keystore (name: trust-2025) is already exist! Try update operation if want to change its value.",
	}
	for k, v := range want {
		if got := d.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if bytes.Contains(d.Data, []byte("changeit")) || !bytes.Contains(d.Data, []byte(`"file":"[REDACTED]"`)) {
		t.Errorf("dead letter not redacted: %s", d.Data)
	}
	if m := dead[missing.ID]; m == nil || m.Header.Get(messages.HeaderRedacted) != "" || string(m.Data) != `{"id":"no-such-user","type":"credential.truststore.set","project":"MyProject","params":{"username":"nobody","keystoreName":"trust-2026"}}` {
		t.Errorf("unredacted dead letter must be the original body: %v", m)
	}
	for _, secret := range []string{"changeit", "sim-token", "MIIC"} {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}

// TestRetriesExhausted fails one command's requests while other commands succeed: the
// failures are the command's, not an outage, and use up its budget.
func TestRetriesExhausted(t *testing.T) {
	e := newEnv(t)
	e.cfg.MaxAttempts = 3
	e.failFor("/credentials/partner-b/", 500)
	e.start(nil)
	cmd := e.publishLine([]byte(`{"id":"poison","type":"credential.truststore.remove","project":"MyProject","params":{"username":"partner-b"}}`))
	deadline := time.After(20 * time.Second)
	for i := 0; ; i++ {
		// Successes between the poison's failures keep the worker from pausing.
		e.publishLine(fmt.Appendf(nil, `{"id":"healthy-%d","type":"credential.truststore.set","project":"MyProject","params":{"username":"api-user","keystoreName":"trust-2026"}}`, i))
		select {
		case msg := <-e.results:
			r := decodeResult(t, msg)
			if r.ID != cmd.ID {
				continue
			}
			if r.Status != messages.StatusFailed || r.Error.Code != messages.CodeRetriesExhausted || r.Attempts < 3 {
				t.Fatalf("result %s", r.raw)
			}
			eventually(t, 5*time.Second, "the dead letter", func() bool { return len(e.streamMsgs("APIOPS_DEAD")) == 1 })
			dead := e.streamMsgs("APIOPS_DEAD")[0]
			if dead.Headers().Get(messages.HeaderErrorCode) != messages.CodeRetriesExhausted || dead.Headers().Get(messages.HeaderAttempts) != fmt.Sprint(r.Attempts) {
				t.Errorf("dead letter headers %v", dead.Headers())
			}
			return
		case <-deadline:
			t.Fatalf("the poison command did not finish; logs:\n%s", e.logs.String())
		}
	}
}

func TestRedeliveredAndRepublishedIDReachAPIOpsOnce(t *testing.T) {
	e := newEnv(t)
	e.cfg.AckWait = time.Second
	w := e.start(nil)
	worker.LoseAcks(w, 1)
	cmd := e.publishLine(readExample(t, "credential.keystore.set"))
	e.awaitResults(1, 10*time.Second)
	// The ack was lost: the command comes back after AckWait and finishes from the store.
	select {
	case again := <-e.results: // the repeated result publish, which JetStream drops
		if r := decodeResult(t, again); r.ID != cmd.ID {
			t.Fatalf("unexpected result %s", again.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the redelivered command did not finish; logs:\n%s", e.logs.String())
	}
	eventually(t, 5*time.Second, "the redelivered command to be acknowledged", func() bool { return e.pending() == 0 })

	// The same id published again with a new replyTo: its stored result is sent there.
	inbox := messages.ReplyInbox("MyProject") + nuid.Next()
	replies, _ := e.nc.SubscribeSync(inbox)
	e.publish("MyProject", cmd.Type, "", withField(t, readExample(t, "credential.keystore.set"), "replyTo", inbox))
	reply, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeResult(t, reply); r.ID != cmd.ID || r.Status != messages.StatusSucceeded || r.Attempts != 1 {
		t.Errorf("reply %s", reply.Data)
	}
	eventually(t, 5*time.Second, "the republished command to be acknowledged", func() bool { return e.pending() == 0 })
	if n := e.apiopsRequests(); n != 1 {
		t.Errorf("APIOps saw %d requests for one id", n)
	}
	if n := len(e.streamMsgs("APIOPS_RESULTS")); n != 1 {
		t.Errorf("%d results stored for one id", n)
	}
}
