package worker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/apiops-worker/apiops-worker/messages"
)

func TestEveryTypeEndToEnd(t *testing.T) {
	for _, ct := range messages.Types() {
		t.Run(ct.Name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.start(nil)
			inbox := messages.ReplyInbox("MyProject") + nuid.Next()
			replies, err := e.nc.SubscribeSync(inbox)
			if err != nil {
				t.Fatal(err)
			}
			cmd := e.publishLine(withField(t, readExample(t, ct.Name), "replyTo", inbox))
			res := e.awaitResults(1, 10*time.Second)[cmd.ID]
			switch {
			case res == nil || res.Status != messages.StatusSucceeded:
				t.Fatalf("result %+v", res)
			case ct.Verifies: // reads deploy-status and route-health per environment
				if len(res.Verification) != 2 || res.Attempts != 4 || res.HTTPStatus != 0 {
					t.Fatalf("result %s", res.raw)
				}
			case res.Attempts != 1 || res.HTTPStatus != 200:
				t.Fatalf("result %s", res.raw)
			}
			if res.Type != ct.Name || res.Project != "MyProject" || res.CorrelationID != "examples" || res.ReceivedAt.IsZero() || res.FinishedAt.Before(res.ReceivedAt) {
				t.Errorf("result %s", res.raw)
			}
			if got := res.header.Get(messages.HeaderMsgID); got != messages.MsgID(cmd.Project, cmd.ID) {
				t.Errorf("Nats-Msg-Id %q", got)
			}
			if res.header.Get(messages.HeaderCommandID) != cmd.ID || res.header.Get(messages.HeaderStatus) != "succeeded" {
				t.Errorf("headers %v", res.header)
			}
			deployments := 2
			switch ct.Name {
			case "proxy.mtls.update", "proxy.verify":
				deployments = 0
			case "proxy.deploy", "proxy.undeploy", "proxy.rollback":
				deployments = 1
			}
			if got := res.DeploymentResult; deployments == 0 && got != nil || deployments > 0 && (got == nil || len(got.EnvironmentResults) != deployments) {
				t.Errorf("deployment result %s", res.raw)
			}
			reply, err := replies.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("no reply on replyTo: %v", err)
			}
			if string(reply.Data) != string(res.raw) || reply.Header.Get(messages.HeaderStatus) != "succeeded" || reply.Header.Get(messages.HeaderMsgID) != messages.MsgID(cmd.Project, cmd.ID) {
				t.Errorf("reply differs from the result: %s %v", reply.Data, reply.Header)
			}
			var params map[string]any
			_ = json.Unmarshal(readExample(t, ct.Name), &params)
			secrets := secretsOf(params)
			if (ct.Name == "keystore.create" || ct.Name == "keystore.update" || ct.Name == "key.create") && len(secrets) < 2 {
				t.Fatalf("found %d secrets in the example", len(secrets))
			}
			for _, secret := range secrets {
				if strings.Contains(string(res.raw), secret) || strings.Contains(e.logs.String(), secret) {
					t.Errorf("a secret reached the result or the logs: %.20s…", secret)
				}
			}
			if strings.Contains(e.logs.String(), "sim-token") {
				t.Error("the token reached the logs")
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

// secretsOf collects the values of every "password" and "file" key in a decoded command.
func secretsOf(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "password" || k == "file" || k == "content") {
				out = append(out, s)
			}
			out = append(out, secretsOf(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, secretsOf(x)...)
		}
	}
	return out
}
