package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
)

// TestBatchGetTakesOnlyCompleteAnswers plays the server's side of a batch direct get
// on a real NATS server, with the answers nats-server gives: only a complete answer
// counts, since a record taken for missing would send its command to APIOps again.
func TestBatchGetTakesOnlyCompleteAnswers(t *testing.T) {
	nc := natstest.Start(t).Connect(t)
	record := func(subject string) *nats.Msg {
		m := nats.NewMsg("")
		m.Header.Set("Nats-Subject", subject)
		m.Data = []byte(`{"seq":1,"result":{}}`)
		return m
	}
	status := func(code, description string, headers ...string) *nats.Msg {
		m := nats.NewMsg("")
		m.Header.Set("Status", code)
		m.Header.Set("Description", description)
		for i := 0; i+1 < len(headers); i += 2 {
			m.Header.Set(headers[i], headers[i+1])
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		answer  []*nats.Msg
		found   int
		wantErr string
	}{
		{"complete", []*nats.Msg{record("$KV.B.a"), record("$KV.B.b"), status("204", "EOB", "Nats-Num-Pending", "0")}, 2, ""},
		{"none found", []*nats.Msg{status("404", "No Results")}, 0, ""},
		{"a record failed to load", []*nats.Msg{record("$KV.B.a"), status("404", "Message Not Found")}, 0, "Message Not Found"},
		{"stopped at the byte limit", []*nats.Msg{record("$KV.B.a"), status("204", "EOB", "Nats-Num-Pending", "1")}, 0, "1 records pending"},
		{"too many", []*nats.Msg{status("413", "Too Many Results")}, 0, "413"},
		{"no answer", nil, 0, "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := strings.ReplaceAll(tc.name, " ", "_")
			responder, err := nc.Subscribe("$JS.API.DIRECT.GET."+stream, func(req *nats.Msg) {
				// A late answer to an earlier request comes first: it must be dropped.
				stale := record("$KV.B.stale")
				stale.Subject = req.Reply[:strings.LastIndexByte(req.Reply, '.')] + ".0"
				_ = nc.PublishMsg(stale)
				for _, m := range tc.answer {
					m.Subject = req.Reply
					_ = nc.PublishMsg(m)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = responder.Unsubscribe() }()
			g := &batchGetter{nc: nc, subject: "$JS.API.DIRECT.GET." + stream, direct: true, inbox: nc.NewInbox()}
			if g.sub, err = nc.SubscribeSync(g.inbox + ".*"); err != nil {
				t.Fatal(err)
			}
			defer g.close()
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			found := map[string][]byte{}
			err = g.lastFor(ctx, []string{"$KV.B.a", "$KV.B.b"}, found)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			case tc.wantErr == "" && len(found) != tc.found:
				t.Fatalf("found %d records, want %d", len(found), tc.found)
			case found["$KV.B.stale"] != nil:
				t.Fatal("took a late answer to another request")
			}
		})
	}
}
