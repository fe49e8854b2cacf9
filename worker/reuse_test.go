package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// TestReusedIDWithInvalidParams: a known id sent again with params that do not
// validate is rejected, naming the faulty field, rather than answered with the stored
// success (which would tell the publisher its new command ran).
func TestReusedIDWithInvalidParams(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	replies, _ := e.nc.SubscribeSync("_INBOX.MyProject.>")
	send := func(params, inbox string) *result {
		t.Helper()
		e.publish("MyProject", "credential.truststore.set", "", []byte(
			`{"id":"rot-invalid-0001","replyTo":"_INBOX.MyProject.`+inbox+`","params":`+params+`}`))
		return nextReply(t, replies)
	}
	if first := send(`{"username":"api-user","keystoreName":"trust-2026"}`, "first"); first.Status != messages.StatusSucceeded {
		t.Fatalf("first: %+v", first)
	}
	invalid := send(`{"username":"api-user"}`, "invalid")
	if invalid.Status != messages.StatusRejected || invalid.Replayed || invalid.Error == nil ||
		invalid.Error.Code != messages.CodeIDReused || invalid.Error.Field != "params.keystoreName" ||
		!strings.Contains(invalid.Error.Message, "invalid") {
		t.Errorf("the id again with invalid params: %+v %+v, want id_reused naming params.keystoreName", invalid, invalid.Error)
	}
	if n := e.apiopsRequests(); n != 1 {
		t.Errorf("%d APIOps requests, want 1", n)
	}
}

// TestDigestKeyOutlivesAShortWindow: without seal keys, the digest key lives in the
// idempotency bucket, whose entries expire after the window; the active instance
// writes it again within a quarter of the window, so that it is never lost while the
// records digested with it live.
func TestDigestKeyOutlivesAShortWindow(t *testing.T) {
	e := newEnv(t)
	e.cfg.IdempotencyWindow = 2 * time.Second
	e.start(nil)
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, worker.DefaultIdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	var first jetstream.KeyValueEntry
	eventually(t, 10*time.Second, "the digest key in the bucket", func() bool {
		first, err = kv.Get(ctx, "digest-key")
		return err == nil
	})
	deadline := first.Created().Add(2 * e.cfg.IdempotencyWindow)
	eventually(t, 30*time.Second, "the key kept past twice the window", func() bool {
		entry, err := kv.Get(ctx, "digest-key")
		if err != nil {
			t.Fatalf("the digest key is gone: %v", err)
		}
		if string(entry.Value()) != string(first.Value()) {
			t.Fatal("the digest key changed")
		}
		return time.Now().After(deadline) && entry.Revision() > first.Revision()
	})
}
