package worker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
	"github.com/apiops-worker/apiops-worker/worker"
)

// TestLegacyRecordsDuringUpgrade: an outcome stored by a worker from before
// project-scoped ids, under the bare id, still keeps that command from running again,
// and keeps no other project's command with the same id from running.
func TestLegacyRecordsDuringUpgrade(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	e.stop()
	kv, err := e.js.KeyValue(context.Background(), worker.DefaultIdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	legacy := `{"seq":999,"result":{"id":"old-1","type":"credential.truststore.set","project":"MyProject","status":"succeeded","attempts":7,` +
		`"receivedAt":"2026-11-28T10:00:00Z","finishedAt":"2026-11-28T10:00:01Z"}}`
	if _, err := kv.Put(context.Background(), "result."+base64.RawURLEncoding.EncodeToString([]byte("old-1")), []byte(legacy)); err != nil {
		t.Fatal(err)
	}
	e.start(nil)
	if !strings.Contains(e.logs.String(), "idempotency records from an older worker found") {
		t.Errorf("the worker did not notice the legacy record; logs:\n%s", e.logs.String())
	}

	replies, _ := e.nc.SubscribeSync("_INBOX.MyProject.>")
	e.publish("MyProject", "credential.truststore.set", "", []byte(`{"id":"old-1","replyTo":"_INBOX.MyProject.mine","params":{"username":"api-user","keystoreName":"trust-2026"}}`))
	msg, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var stored messages.Result
	if err := json.Unmarshal(msg.Data, &stored); err != nil || stored.Attempts != 7 {
		t.Errorf("the republished command got %s, want the legacy record's result", msg.Data)
	}
	if n := e.apiopsRequests(); n != 0 {
		t.Errorf("a command finished by an older worker reached APIOps again: %d requests", n)
	}

	e.publish("TeamA", "credential.truststore.set", "", []byte(`{"id":"old-1","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`))
	res := e.awaitResults(1, 10*time.Second)["old-1"]
	if res == nil || res.Project != "TeamA" || res.Status != messages.StatusSucceeded || res.Attempts != 1 {
		t.Errorf("another project's old-1 was not executed: %+v", res)
	}
}

// TestLegacyRecordsWrittenLater: an older worker still running beside this one writes
// a legacy record after this one started; the periodic check finds it.
func TestLegacyRecordsWrittenLater(t *testing.T) {
	e := newEnv(t)
	clock := &shiftedClock{}
	e.cfg.Clock = clock
	e.start(nil)
	if strings.Contains(e.logs.String(), "older worker found") {
		t.Fatal("legacy records found in a fresh bucket")
	}
	kv, _ := e.js.KeyValue(context.Background(), worker.DefaultIdempotencyBucket)
	legacy := `{"seq":998,"result":{"id":"late-1","type":"credential.truststore.set","project":"MyProject","status":"succeeded","attempts":3,` +
		`"receivedAt":"2026-11-28T10:00:00Z","finishedAt":"2026-11-28T10:00:01Z"}}`
	if _, err := kv.Put(context.Background(), "result."+base64.RawURLEncoding.EncodeToString([]byte("late-1")), []byte(legacy)); err != nil {
		t.Fatal(err)
	}
	clock.shift(2 * time.Minute)
	replies, _ := e.nc.SubscribeSync("_INBOX.MyProject.late")
	e.publish("MyProject", "credential.truststore.set", "", []byte(`{"id":"late-1","replyTo":"_INBOX.MyProject.late","params":{"username":"api-user","keystoreName":"trust-2026"}}`))
	msg, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msg.Data), `"attempts":3`) || e.apiopsRequests() != 0 {
		t.Errorf("a command an older worker finished ran again: %s, %d requests", msg.Data, e.apiopsRequests())
	}
}

// shiftedClock is the real clock, moved forward by what a test adds.
type shiftedClock struct{ offset atomic.Int64 }

func (c *shiftedClock) Now() time.Time                         { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *shiftedClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (c *shiftedClock) shift(d time.Duration)                  { c.offset.Add(int64(d)) }

// TestReusedIDStoredMeanwhile: while this instance executes a command, another one
// stores an outcome for the same project and id as another type. This instance must
// report what it did under the message's own Nats-Msg-Id, not claim the other's.
func TestReusedIDStoredMeanwhile(t *testing.T) {
	e := newEnv(t)
	w := e.start(nil)
	worker.LoseAcks(w, 1) // and the message comes back: it must keep its own outcome
	kv, err := e.js.KeyValue(context.Background(), worker.DefaultIdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	other := `{"seq":424242,"result":{"id":"race-1","type":"keystore.delete","project":"MyProject","status":"succeeded","attempts":1,` +
		`"receivedAt":"2026-11-28T10:00:00Z","finishedAt":"2026-11-28T10:00:01Z"}}`
	e.mu.Lock()
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/credentials/api-user/truststore/") {
			if _, err := kv.Create(context.Background(), worker.ResultKey("MyProject", "race-1"), []byte(other)); err != nil {
				t.Errorf("store the other instance's outcome: %v", err)
			}
		}
		return false
	}
	e.mu.Unlock()

	replies, _ := e.nc.SubscribeSync("_INBOX.MyProject.race")
	e.publish("MyProject", "credential.truststore.set", "", []byte(`{"id":"race-1","replyTo":"_INBOX.MyProject.race","params":{"username":"api-user","keystoreName":"trust-2026"}}`))
	res := e.awaitResults(1, 10*time.Second)["race-1"]
	if res == nil || res.Type != "credential.truststore.set" || res.Status != messages.StatusSucceeded {
		t.Fatalf("result %+v, want this command's own success", res)
	}
	for i := range 2 { // the first delivery's reply, then the redelivery's
		msg, err := replies.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if msg.Header.Get(messages.HeaderStatus) != string(messages.StatusSucceeded) {
			t.Errorf("reply %d: %s", i, msg.Data)
		}
	}
	if n := len(e.streamMsgs(worker.DefaultResultStream)); n != 1 {
		t.Errorf("%d results stored, want 1", n)
	}
	if n := len(e.streamMsgs(worker.DefaultDeadStream)); n != 0 {
		t.Errorf("%d dead letters for a command that succeeded", n)
	}
	if n := e.apiopsRequests(); n != 1 {
		t.Errorf("%d APIOps requests, want 1", n)
	}
	if got := res.header.Get(messages.HeaderMsgID); !strings.HasPrefix(got, "MyProject/race-1@") {
		t.Errorf("Nats-Msg-Id %q, want the message's own", got)
	}
	entry, err := kv.Get(context.Background(), worker.ResultKey("MyProject", "race-1"))
	if err != nil || !strings.Contains(string(entry.Value()), "keystore.delete") {
		t.Errorf("the other instance's record was replaced: %v", err)
	}
	if !strings.Contains(e.logs.String(), "finished meanwhile as another command") {
		t.Errorf("no warning logged:\n%s", e.logs.String())
	}
	eventually(t, 5*time.Second, "the command acknowledged", func() bool { return e.pending() == 0 })
}

// TestSameIDInTwoProjectsKeepsBothRecords: the records of one id in two projects are
// two keys; neither overwrites the other.
func TestSameIDInTwoProjectsKeepsBothRecords(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	e.publish("MyProject", "credential.truststore.set", messages.MsgID("MyProject", "twin-1"),
		[]byte(`{"id":"twin-1","params":{"username":"api-user","keystoreName":"trust-2026"}}`))
	e.publish("TeamA", "keystore.delete", messages.MsgID("TeamA", "twin-1"), []byte(`{"id":"twin-1","params":{"keystoreName":"team-a-trust"}}`))
	results := make(map[string]*result)
	for range 2 {
		for _, r := range e.awaitResults(1, 10*time.Second) {
			results[r.Project] = r
		}
	}
	if results["MyProject"].Status != messages.StatusSucceeded || results["TeamA"].Status != messages.StatusSucceeded {
		t.Fatalf("results %+v %+v", results["MyProject"], results["TeamA"])
	}
	kv, _ := e.js.KeyValue(context.Background(), worker.DefaultIdempotencyBucket)
	for project, typ := range map[string]string{"MyProject": "credential.truststore.set", "TeamA": "keystore.delete"} {
		entry, err := kv.Get(context.Background(), worker.ResultKey(project, "twin-1"))
		if err != nil || !strings.Contains(string(entry.Value()), `"type":"`+typ+`"`) {
			t.Errorf("%s's record: %v", project, err)
		}
	}
	if _, err := kv.Get(context.Background(), "result."+base64.RawURLEncoding.EncodeToString([]byte("twin-1"))); err != jetstream.ErrKeyNotFound {
		t.Errorf("a record under the bare id: %v", err)
	}
}

// TestReusedIDWithOtherParams: an id is one command. Published again as the same
// command, its stored result is replied, marked replayed, and nothing runs; published
// with other params, it is refused as id_reused, naming the field, and nothing runs.
func TestReusedIDWithOtherParams(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	replies, _ := e.nc.SubscribeSync("_INBOX.MyProject.>")
	send := func(keystore, inbox string) *result {
		t.Helper()
		e.publish("MyProject", "credential.truststore.set", "", fmt.Appendf(nil,
			`{"id":"rot-2026-11-22-0002","replyTo":"_INBOX.MyProject.%s","params":{"username":"api-user","keystoreName":%q}}`, inbox, keystore))
		return nextReply(t, replies)
	}
	if first := send("trust-2026", "first"); first.Status != messages.StatusSucceeded || first.Replayed {
		t.Fatalf("first: %+v", first)
	}
	if again := send("trust-2026", "again"); again.Status != messages.StatusSucceeded || !again.Replayed {
		t.Errorf("the same command again: %+v, want the stored result, replayed", again)
	}
	other := send("legacy-2019", "other")
	if other.Status != messages.StatusRejected || other.Error == nil || other.Error.Code != messages.CodeIDReused ||
		other.Error.Field != "params.keystoreName" || !strings.Contains(other.Error.Message, "params.keystoreName") {
		t.Errorf("the id with another keystore: %+v %+v, want id_reused naming params.keystoreName", other, other.Error)
	}
	if n := e.apiopsRequests(); n != 1 {
		t.Errorf("%d APIOps requests, want 1", n)
	}
}

// TestReusedIDComparesSecrets: secrets compare by a digest only the workers can make:
// the same keystore sealed twice is the same command, another keystore is not. A
// record from an older worker, without a fingerprint, is honoured as it was.
func TestReusedIDComparesSecrets(t *testing.T) {
	e := newEnv(t)
	keys, err := seal.LoadDir("../testdata/sealed/keys")
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Opener, e.cfg.DigestKeys = keys, keys
	e.start(nil)
	replies, _ := e.nc.SubscribeSync("_INBOX.MyProject.>")
	sealed := func(field, value string) string {
		s, err := seal.Seal(keys.Current(), messages.SealedContent{Project: "MyProject", Field: field, Value: value})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(s)
		return string(data)
	}
	send := func(id, fixture string) *result {
		t.Helper()
		file, err := os.ReadFile("../testdata/keystores/" + fixture)
		if err != nil {
			t.Fatal(err)
		}
		e.publish("MyProject", "keystore.create", "", fmt.Appendf(nil,
			`{"id":%q,"replyTo":"_INBOX.MyProject.x","params":{"name":"trust-2027","keyStoreEnvironmentList":[`+
				`{"environmentName":"production","keyStoreType":"PKCS12","file":%s,"password":%s}]}}`,
			id, sealed("file", base64.StdEncoding.EncodeToString(file)), sealed("password", "changeit")))
		res := nextReply(t, replies)
		if strings.Contains(string(res.raw), "changeit") {
			t.Errorf("a reply quotes the password: %s", res.raw)
		}
		return res
	}
	if first := send("ks-1", "trust-2027.p12"); first.Status != messages.StatusSucceeded {
		t.Fatalf("first: %+v %+v", first, first.Error)
	}
	if again := send("ks-1", "trust-2027.p12"); again.Status != messages.StatusSucceeded || !again.Replayed {
		t.Errorf("the same keystore sealed again: %+v %+v, want the stored result, replayed", again, again.Error)
	}
	other := send("ks-1", "client-2026.p12")
	if other.Error == nil || other.Error.Code != messages.CodeIDReused || other.Error.Field != "params.keyStoreEnvironmentList[0].file" {
		t.Errorf("another keystore under the id: %+v %+v, want id_reused naming the file", other, other.Error)
	}
	kv, _ := e.js.KeyValue(context.Background(), worker.DefaultIdempotencyBucket)
	entry, err := kv.Get(context.Background(), worker.ResultKey("MyProject", "ks-1"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(entry.Value()), "changeit") || !strings.Contains(string(entry.Value()), `"digestKey":"`+keys.Current()+`"`) {
		t.Errorf("the record: %s", entry.Value())
	}

	// An older worker's record: no fingerprint, so any params are the same command.
	legacy := `{"seq":777,"result":{"id":"ks-old","type":"keystore.create","project":"MyProject","status":"succeeded","attempts":1,` +
		`"receivedAt":"2026-11-28T10:00:00Z","finishedAt":"2026-11-28T10:00:01Z"}}`
	if _, err := kv.Put(context.Background(), worker.ResultKey("MyProject", "ks-old"), []byte(legacy)); err != nil {
		t.Fatal(err)
	}
	if old := send("ks-old", "client-2026.p12"); old.Status != messages.StatusSucceeded || !old.Replayed {
		t.Errorf("an older worker's record: %+v, want it honoured", old)
	}
	if n := e.apiopsRequests(); n != 1 {
		t.Errorf("%d APIOps requests, want 1", n)
	}
}

// TestReusedIDZeroValueAndPlanRetry: a value given, even false, is not the field left
// out: an mTLS update that reuses an id and adds `"enabled": false` (it would disable
// mTLS; leaving it out leaves mTLS as it is) is refused as id_reused naming
// params.enabled, not replayed as if it had run. A plan retried with another
// correlationId (which each step copies) is the same plan: replayed, not refused.
func TestReusedIDZeroValueAndPlanRetry(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	replies, _ := e.nc.SubscribeSync("_INBOX.MyProject.>")
	send := func(inbox, extra string) *result {
		t.Helper()
		e.publish("MyProject", "proxy.mtls.update", "", fmt.Appendf(nil,
			`{"id":"harden-1","replyTo":"_INBOX.MyProject.%s","params":{"apiProxyName":"PaymentsAPI","trustStoreName":"trust-2026"%s}}`, inbox, extra))
		return nextReply(t, replies)
	}
	if first := send("first", ""); first.Status != messages.StatusSucceeded || first.Replayed {
		t.Fatalf("first: %+v %+v", first, first.Error)
	}
	requests := e.apiopsRequests()
	if again := send("again", ""); again.Status != messages.StatusSucceeded || !again.Replayed {
		t.Errorf("the same command again: %+v, want the stored result, replayed", again)
	}
	hardened := send("hardened", `,"enabled":false`)
	if hardened.Status != messages.StatusRejected || hardened.Error == nil || hardened.Error.Code != messages.CodeIDReused ||
		hardened.Error.Field != "params.enabled" {
		t.Errorf("the id with enabled false: %+v %+v, want id_reused naming params.enabled", hardened, hardened.Error)
	}
	if n := e.apiopsRequests(); n != requests {
		t.Errorf("%d APIOps requests after the replay and the refusal, want %d", n, requests)
	}

	plan := func(correlation, inbox string) []byte {
		var body map[string]any
		_ = json.Unmarshal(rotationPlan("retried-plan", "plan-2027"), &body)
		body["correlationId"], body["replyTo"] = correlation, "_INBOX.MyProject."+inbox
		data, _ := json.Marshal(body)
		return data
	}
	e.publishPlan("retried-plan", plan("run-1", "plan-first"))
	if first := nextReply(t, replies); first.Type != messages.PlanType || first.Status != messages.StatusSucceeded || first.Replayed {
		t.Fatalf("the plan: %+v %+v", first, first.Error)
	}
	requests = e.apiopsRequests()
	// Without Nats-Msg-Id: JetStream would drop the copy (see the design note).
	e.publish("MyProject", messages.PlanType, "", plan("run-2", "plan-retry"))
	if retry := nextReply(t, replies); retry.Status != messages.StatusSucceeded || !retry.Replayed {
		t.Errorf("the plan retried with another correlationId: %+v %+v, want the stored result, replayed", retry, retry.Error)
	}
	if n := e.apiopsRequests(); n != requests {
		t.Errorf("%d APIOps requests after the replays, want %d", n, requests)
	}
}
