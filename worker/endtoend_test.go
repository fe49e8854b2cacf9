package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

func TestEveryTypeEndToEnd(t *testing.T) {
	for _, ct := range messages.Types() {
		t.Run(ct.Name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.start(nil)
			inbox := e.nc.NewRespInbox()
			replies, err := e.nc.SubscribeSync(inbox)
			if err != nil {
				t.Fatal(err)
			}
			cmd := e.publishLine(withField(t, readExample(t, ct.Name), "replyTo", inbox))
			res := e.awaitResults(1, 10*time.Second)[cmd.ID]
			if res == nil || res.Status != messages.StatusSucceeded || res.Attempts != 1 || res.HTTPStatus != 200 {
				t.Fatalf("result %s", res.raw)
			}
			if res.Type != ct.Name || res.Project != "MyProject" || res.CorrelationID != "examples" || res.ReceivedAt.IsZero() || res.FinishedAt.Before(res.ReceivedAt) {
				t.Errorf("result %s", res.raw)
			}
			if got := res.header.Get(messages.HeaderMsgID); got != cmd.ID {
				t.Errorf("Nats-Msg-Id %q", got)
			}
			if res.header.Get(messages.HeaderCommandID) != cmd.ID || res.header.Get(messages.HeaderStatus) != "succeeded" {
				t.Errorf("headers %v", res.header)
			}
			if ct.Name != "proxy.mtls.update" && (res.DeploymentResult == nil || len(res.DeploymentResult.EnvironmentResults) != 2) {
				t.Errorf("deployment result %s", res.raw)
			}
			reply, err := replies.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("no reply on replyTo: %v", err)
			}
			if string(reply.Data) != string(res.raw) || reply.Header.Get(messages.HeaderStatus) != "succeeded" || reply.Header.Get(messages.HeaderMsgID) != cmd.ID {
				t.Errorf("reply differs from the result: %s %v", reply.Data, reply.Header)
			}
			if strings.Contains(string(res.raw), "changeit") {
				t.Error("result holds a password")
			}
			eventually(t, 5*time.Second, "the command to be acknowledged", func() bool { return e.pending() == 0 })
			if n := len(e.streamMsgs("APIOPS_RESULTS")); n != 1 {
				t.Errorf("%d results stored", n)
			}
			if n := len(e.streamMsgs("APIOPS_DEAD")); n != 0 {
				t.Errorf("%d dead letters for a success", n)
			}
		})
	}
}
