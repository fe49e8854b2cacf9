package client_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/internal/testkit/fakeworker"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
	"github.com/apiops-worker/apiops-worker/messages"
)

const password = "pw-s3cret-7f3a"

// Real keystores, one of each type, since a worker opens every file with its password
// and declared type before it runs a command.
var (
	fileBytes = keystorestest.File(keystorestest.Spec{Password: password, TrustStore: true})
	file      = base64.StdEncoding.EncodeToString(fileBytes)
	jksBytes  = keystorestest.File(keystorestest.Spec{Kind: "JKS", Password: password, TrustStore: true})
	jksFile   = base64.StdEncoding.EncodeToString(jksBytes)
)

type env struct {
	nc       *nats.Conn
	client   *client.Client
	commands jetstream.Stream
}

// setup starts NATS with the worker's streams and returns a client on it.
func setup(t *testing.T) env {
	t.Helper()
	nc := natstest.Start(t).Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	commands, _ := fakeworker.CreateStreams(t, js, "")
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return env{nc: nc, client: c, commands: commands}
}

func truststoreSet(id, username string) *messages.Command {
	return &messages.Command{
		ID: id, Project: "MyProject", CorrelationID: "test-run",
		Params: &messages.CredentialTruststoreSet{Username: username, KeystoreName: "trust-2027"},
	}
}

// keystoreCreate creates a keystore of keyStoreType; its file is file, or jksFile for
// JKS.
func keystoreCreate(id, keyStoreType string) *messages.Command {
	file := file
	if keyStoreType == "JKS" {
		file = jksFile
	}
	return &messages.Command{
		ID: id, Type: "keystore.create", Project: "MyProject",
		Params: &messages.KeystoreCreate{Name: "trust-" + id, KeyStoreEnvironmentList: []messages.KeyStoreEnvironment{{
			EnvironmentName: "production", File: messages.NewSecret(file), Password: messages.NewSecret(password), KeyStoreType: keyStoreType,
		}}},
	}
}

func msgCount(t *testing.T, s jetstream.Stream) uint64 {
	t.Helper()
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func noSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, secret := range []string{password, file, string(fileBytes), jksFile, string(jksBytes)} {
		if strings.Contains(text, secret) {
			t.Errorf("%s shows a secret: %s", what, text)
		}
	}
}

func TestPublishSetsSubjectAndHeader(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	cmd := truststoreSet("pub-0001", "api-user") // Type follows from Params
	dup, err := e.client.Publish(ctx, cmd)
	if err != nil || dup {
		t.Fatalf("Publish: duplicate %v, %v", dup, err)
	}
	m, err := e.commands.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := "apiops.cmd.MyProject.credential.truststore.set"; m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	if got := m.Header.Get(messages.HeaderMsgID); got != "MyProject/pub-0001" {
		t.Errorf("Nats-Msg-Id %q", got)
	}
	got, err := messages.Decode("MyProject", "credential.truststore.set", m.Data)
	if err != nil || got.ID != "pub-0001" || got.CorrelationID != "test-run" {
		t.Errorf("stored command %s: %v", m.Data, err)
	}

	dup, err = e.client.Publish(ctx, cmd)
	if err != nil || !dup {
		t.Errorf("second Publish: duplicate %v, %v; want a duplicate", dup, err)
	}
	if n := msgCount(t, e.commands); n != 1 {
		t.Errorf("%d messages in the stream, want 1", n)
	}
}

func TestPrefix(t *testing.T) {
	nc := natstest.Start(t).Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	commands, _ := fakeworker.CreateStreams(t, js, "acme.ops")
	c, err := client.New(nc, client.WithPrefix("acme.ops"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(context.Background(), truststoreSet("pre-1", "u")); err != nil {
		t.Fatal(err)
	}
	m, err := commands.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := "acme.ops.cmd.MyProject.credential.truststore.set"; m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	for _, bad := range []string{"", "a.*", "a..b", "a b"} {
		if _, err := client.New(nc, client.WithPrefix(bad)); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
	if _, err := client.New(nil); err == nil {
		t.Error("New(nil) accepted")
	}
}

func TestPublishRefusesInvalidCommand(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	for _, tc := range []struct {
		cmd   *messages.Command
		field string
	}{
		{keystoreCreate("bad-1", "PEM"), "params.keyStoreEnvironmentList[0].keyStoreType"},
		{truststoreSet("bad id", "u"), "id"},
		{truststoreSet("bad-3", ".."), "params.username"},
		{&messages.Command{ID: "bad-4", Params: &messages.KeystoreDelete{KeystoreName: "k"}}, "project"},
		{&messages.Command{ID: "bad-5", Project: "P", Type: "keystore.create", Params: &messages.KeystoreDelete{KeystoreName: "k"}}, "params.keystoreName"},
	} {
		_, err := e.client.Publish(ctx, tc.cmd)
		var me *messages.Error
		if !errors.As(err, &me) || me.Field != tc.field {
			t.Errorf("%s: error %v, want one on field %s", tc.cmd.ID, err, tc.field)
			continue
		}
		noSecret(t, "error", err.Error())
	}
	if _, err := e.client.Publish(ctx, &messages.Command{ID: "x", Project: "P", Params: "not params"}); err == nil {
		t.Error("params of no command type accepted")
	}
	if _, err := e.client.Publish(ctx, nil); err == nil {
		t.Error("nil command accepted")
	}
	if _, err := e.client.Request(ctx, keystoreCreate("bad-6", "PEM")); err == nil {
		t.Error("Request published an invalid command")
	}
	if n := msgCount(t, e.commands); n != 0 {
		t.Errorf("%d messages in the stream, want none", n)
	}
}

func TestRequest(t *testing.T) {
	e := setup(t)
	w := fakeworker.Start(t, e.nc, fakeworker.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cmd := truststoreSet("req-0001", "api-user")
	cmd.ReplyTo = "somewhere.else"
	r, err := e.client.Request(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "req-0001" || r.Status != messages.StatusSucceeded || r.Type != "credential.truststore.set" || r.CorrelationID != "test-run" {
		t.Errorf("result %+v", r)
	}
	if cmd.ReplyTo != "somewhere.else" {
		t.Errorf("Request changed the caller's command: replyTo %q", cmd.ReplyTo)
	}
	got := w.Received()
	if len(got) != 1 || got[0].Header.Get(messages.HeaderMsgID) != "MyProject/req-0001" || strings.Contains(string(got[0].Data), "somewhere.else") {
		t.Errorf("worker received %+v", got)
	}
}

func TestRequestDuplicateGetsStoredResult(t *testing.T) {
	e := setup(t)
	w := fakeworker.Start(t, e.nc, fakeworker.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cmd := truststoreSet("dup-0001", "api-user")
	first, err := e.client.Request(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	// Within the duplicate window: JetStream drops the second publish, the client
	// publishes again without Nats-Msg-Id and the worker answers from its store.
	second, err := e.client.Request(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if !second.ReceivedAt.Equal(first.ReceivedAt) || second.Status != first.Status {
		t.Errorf("second result %+v is not the stored %+v", second, first)
	}
	if n := w.Executions("dup-0001"); n != 1 {
		t.Errorf("executed %d times", n)
	}
	got := w.Received()
	if len(got) != 2 || got[1].Header.Get(messages.HeaderMsgID) != "" {
		t.Errorf("worker received %d messages, second with Nats-Msg-Id %q", len(got), got[len(got)-1].Header.Get(messages.HeaderMsgID))
	}

	// Published without a reply first: Request still gets the result.
	cmd = truststoreSet("dup-0002", "partner-a")
	if _, err := e.client.Publish(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	r, err := e.client.Request(ctx, cmd)
	if err != nil || r.ID != "dup-0002" {
		t.Fatalf("result %+v, %v", r, err)
	}
	if n := w.Executions("dup-0002"); n != 1 {
		t.Errorf("executed %d times", n)
	}
}

func TestRequestDeadline(t *testing.T) {
	e := setup(t) // nobody answers
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := e.client.Request(ctx, keystoreCreate("late-0001", "PKCS12"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "late-0001") {
		t.Fatalf("error %v, want the deadline naming the command", err)
	}
	noSecret(t, "error", err.Error())
}

func rotation(t *testing.T) []*messages.Command {
	t.Helper()
	f, err := os.Open("../testdata/rotation.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []*messages.Command
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		cmd, err := messages.DecodeLine(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cmds
}

func TestSubmitRotation(t *testing.T) {
	e := setup(t)
	w := fakeworker.Start(t, e.nc, fakeworker.Options{Outcome: func(cmd *messages.Command, r *messages.Result) bool {
		if cmd.ID == "rot-2026-11-22-0004" {
			r.Status = messages.StatusPartial
			r.Error = &messages.Error{Code: messages.CodeDeployFailed, Message: "Deployment completed with errors"}
		}
		return true
	}})
	cmds := rotation(t)
	if len(cmds) != 11 {
		t.Fatalf("%d commands in rotation.jsonl", len(cmds))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for round := range 2 { // the second round is all duplicates
		results := make([]*messages.Result, len(cmds))
		calls := 0
		err := e.client.Submit(ctx, cmds, func(i int, r *messages.Result) {
			calls++
			if results[i] != nil {
				t.Errorf("round %d: second result for %d", round, i)
			}
			results[i] = r
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if calls != 11 {
			t.Errorf("round %d: %d results", round, calls)
		}
		for i, r := range results {
			want := messages.StatusSucceeded
			if cmds[i].ID == "rot-2026-11-22-0004" {
				want = messages.StatusPartial
			}
			if r == nil || r.ID != cmds[i].ID || r.Status != want {
				t.Errorf("round %d: result %d: %+v", round, i, r)
			}
		}
	}
	for _, cmd := range cmds {
		if n := w.Executions(cmd.ID); n != 1 {
			t.Errorf("%s executed %d times", cmd.ID, n)
		}
		if cmd.ReplyTo != "" {
			t.Errorf("Submit changed the caller's command %s", cmd.ID)
		}
	}
	if got := len(w.Received()); got != 22 {
		t.Errorf("worker received %d messages, want 22", got)
	}
}

func TestSubmitRefusesInvalidBatch(t *testing.T) {
	e := setup(t)
	cmds := []*messages.Command{truststoreSet("ok-1", "u"), keystoreCreate("bad-2", "PEM"), truststoreSet("ok-3", "v")}
	err := e.client.Submit(context.Background(), cmds, nil)
	var me *messages.Error
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "command 1") || !strings.Contains(err.Error(), "bad-2") {
		t.Fatalf("error %v", err)
	}
	noSecret(t, "error", err.Error())
	if n := msgCount(t, e.commands); n != 0 {
		t.Errorf("%d messages in the stream, want none", n)
	}
	if err := e.client.Submit(context.Background(), nil, nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
}

func TestSubmitMissingResults(t *testing.T) {
	e := setup(t)
	fakeworker.Start(t, e.nc, fakeworker.Options{Outcome: func(cmd *messages.Command, _ *messages.Result) bool {
		return cmd.ID == "keep-1" // the others are lost
	}})
	cmds := []*messages.Command{truststoreSet("keep-1", "a"), keystoreCreate("lost-2", "PKCS12"), truststoreSet("lost-3", "c")}

	// Only keep-1 can ever be answered; onResult runs on Submit's goroutine and ends
	// the wait once it has.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []string
	err := e.client.Submit(ctx, cmds, func(i int, r *messages.Result) {
		got = append(got, r.ID)
		cancel()
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "2 of 3 commands have no result") {
		t.Fatalf("error %v", err)
	}
	if len(got) != 1 || got[0] != "keep-1" {
		t.Errorf("results for %v", got)
	}
	noSecret(t, "error", err.Error())

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = e.client.Submit(ctx, cmds[1:], nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "2 of 2 commands have no result") {
		t.Errorf("error %v", err)
	}
}

func TestSubmitWithoutStream(t *testing.T) {
	nc := natstest.Start(t).Connect(t) // no streams
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Submit(ctx, []*messages.Command{keystoreCreate("ns-1", "JKS")}, nil)
	if !errors.Is(err, jetstream.ErrNoStreamResponse) || !strings.Contains(err.Error(), "ns-1") {
		t.Fatalf("error %v", err)
	}
	noSecret(t, "error", err.Error())
	if _, err := c.Publish(ctx, keystoreCreate("ns-2", "JKS")); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("Publish: %v", err)
	}
}

func TestSecretsReachTheWire(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	if _, err := e.client.Publish(ctx, keystoreCreate("sec-0001", "PKCS12")); err != nil {
		t.Fatal(err)
	}
	m, err := e.commands.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m.Data), `"password":"`+password+`"`) || !strings.Contains(string(m.Data), `"file":"`+file+`"`) {
		t.Errorf("the wire form lacks the secrets: %s", m.Data)
	}
}

// TestRequestIgnoresForeignReplies: whatever else reaches the reply inbox (garbage, or
// the result of another command that named this inbox as its replyTo) is not taken
// for the command's result.
func TestRequestIgnoresForeignReplies(t *testing.T) {
	e := setup(t)
	forger := e.nc
	sub, err := forger.Subscribe("apiops.cmd.>", func(m *nats.Msg) {
		var cmd struct {
			ID, ReplyTo string
		}
		if json.Unmarshal(m.Data, &cmd) != nil || cmd.ReplyTo == "" {
			return
		}
		for _, forged := range []string{
			`not json`,
			`{"id":"other","type":"credential.truststore.set","project":"MyProject","status":"failed"}`,
			`{"id":"` + cmd.ID + `","type":"credential.truststore.set","project":"TeamA","status":"failed"}`,
			`{"id":"` + cmd.ID + `","type":"keystore.delete","project":"MyProject","status":"failed"}`,
			`{"id":"` + cmd.ID + `","type":"credential.truststore.set","project":"MyProject","status":"succeeded","attempts":1}`,
		} {
			_ = forger.Publish(cmd.ReplyTo, []byte(forged))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := e.client.Request(ctx, truststoreSet("mine-1", "api-user"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != messages.StatusSucceeded || r.Attempts != 1 {
		t.Errorf("Request took a foreign reply: %+v", r)
	}
}

// TestWithInboxPrefixChecksTheConnection: a client told its team's inbox prefix
// refuses a connection made without it.
func TestWithInboxPrefixChecksTheConnection(t *testing.T) {
	srv := natstest.Start(t)
	if _, err := client.New(srv.Connect(t), client.WithInboxPrefix("_INBOX.TeamA")); err == nil ||
		!strings.Contains(err.Error(), `nats.CustomInboxPrefix("_INBOX.TeamA")`) {
		t.Errorf("a connection with the default inbox: %v", err)
	}
	if _, err := client.New(srv.Connect(t, nats.CustomInboxPrefix("_INBOX.TeamA")), client.WithInboxPrefix("_INBOX.TeamA")); err != nil {
		t.Errorf("a connection with the team's inbox: %v", err)
	}
}

// TestRefusedInboxIsExplained: a publisher whose permissions allow only its team's
// inbox, connected without that prefix, gets an error that says so rather than a
// timeout; and so does one that may not subscribe where the worker sends its project's
// results.
func TestRefusedInboxIsExplained(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "admin", Password: "a"},
			{Username: "team", Password: "t", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"apiops.cmd.MyProject.>", "apiops.cmd.TeamA.>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.MyProject.>"}},
			}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	admin, err := nats.Connect(srv.ClientURL(), nats.UserInfo("admin", "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	js, _ := jetstream.New(admin)
	fakeworker.CreateStreams(t, js, "")

	quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("team", "t"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, _ := client.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.Request(ctx, truststoreSet("inbox-1", "api-user"))
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "--inbox-prefix") || ctx.Err() != nil {
		t.Errorf("Request with a refused inbox: %v", err)
	}
	// A fresh connection, so that Publish meets the refusal itself.
	fresh, err := nats.Connect(srv.ClientURL(), nats.UserInfo("team", "t"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	freshClient, _ := client.New(fresh)
	short, cancelShort := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelShort()
	if _, err := freshClient.Publish(short, truststoreSet("inbox-2", "api-user")); err == nil || !strings.Contains(err.Error(), "CustomInboxPrefix") {
		t.Errorf("Publish with a refused inbox: %v", err)
	}

	// With its prefix, the same user is served.
	ok, err := nats.Connect(srv.ClientURL(), nats.UserInfo("team", "t"), nats.CustomInboxPrefix("_INBOX.MyProject"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	okClient, _ := client.New(ok, client.WithInboxPrefix("_INBOX.MyProject"))
	if dup, err := okClient.Publish(ctx, truststoreSet("inbox-3", "api-user")); err != nil || dup {
		t.Errorf("Publish with the team's inbox: %v", err)
	}
	// ...but not for a project whose results come where it may not subscribe.
	other := truststoreSet("inbox-4", "api-user")
	other.Project = "TeamA"
	if _, err := okClient.Request(ctx, other); !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "_INBOX.TeamA.") || ctx.Err() != nil {
		t.Errorf("Request for a project whose inbox is refused: %v", err)
	}
}

// TestReplyToUnderProjectInbox: whatever the connection's inbox prefix, Request,
// Submit and SubmitPlan put every replyTo under _INBOX.<the command's project>., the
// only place the worker sends results to, and a batch of several projects gets every
// result.
func TestReplyToUnderProjectInbox(t *testing.T) {
	srv := natstest.Start(t)
	admin := srv.Connect(t)
	js, _ := jetstream.New(admin)
	fakeworker.CreateStreams(t, js, "")
	w := fakeworker.Start(t, admin, fakeworker.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	teamA := func(cmd *messages.Command) *messages.Command { cmd.Project = "TeamA"; return cmd }
	for _, prefix := range []string{"", "_INBOX.TeamA", "_OTHER"} {
		opts := []nats.Option{}
		if prefix != "" {
			opts = append(opts, nats.CustomInboxPrefix(prefix))
		}
		c, err := client.New(srv.Connect(t, opts...))
		if err != nil {
			t.Fatal(err)
		}
		if r, err := c.Request(ctx, teamA(truststoreSet("rq-"+prefix, "a"))); err != nil || r.Status != messages.StatusSucceeded {
			t.Errorf("prefix %q: Request: %+v, %v", prefix, r, err)
		}
		batch := []*messages.Command{truststoreSet("b1-"+prefix, "a"), teamA(truststoreSet("b2-"+prefix, "b")), truststoreSet("b3-"+prefix, "c")}
		got := map[int]string{}
		if err := c.Submit(ctx, batch, func(i int, r *messages.Result) { got[i] = r.Project + "/" + r.ID }); err != nil {
			t.Errorf("prefix %q: Submit: %v", prefix, err)
		}
		for i, cmd := range batch {
			if got[i] != cmd.Project+"/"+cmd.ID {
				t.Errorf("prefix %q: result %d is %q", prefix, i, got[i])
			}
		}
		plan := &messages.Command{ID: "plan-" + prefix, Project: "TeamA", Params: &messages.Plan{Steps: []*messages.Command{
			{Params: &messages.CredentialTruststoreSet{Username: "a", KeystoreName: "trust-2027"}}}}}
		if r, err := c.SubmitPlan(ctx, plan, nil); err != nil || r.Status != messages.StatusSucceeded {
			t.Errorf("prefix %q: SubmitPlan: %+v, %v", prefix, r, err)
		}
	}
	for _, m := range w.Received() {
		var body struct{ ID, Project, ReplyTo string }
		if err := json.Unmarshal(m.Data, &body); err != nil || !strings.HasPrefix(body.ReplyTo, "_INBOX."+body.Project+".") {
			t.Errorf("%s %s published with replyTo %q", body.Project, body.ID, body.ReplyTo)
		}
	}
}
