package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/expiry"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/internal/testkit/workertest"
	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

// The passwords deploy/nats/accounts.conf reads from nats-server's environment.
const (
	workerPassword = "worker-pw"
	teamAPassword  = "team-a-pw"
	adminPassword  = "admin-pw"
)

func setShippedPasswords(t *testing.T) {
	for k, v := range map[string]string{
		"APIOPS_WORKER_NATS_PASSWORD": workerPassword, "TEAM_A_NATS_PASSWORD": teamAPassword,
		"APIOPS_ADMIN_NATS_PASSWORD": adminPassword, "SYS_NATS_PASSWORD": "sys-pw",
	} {
		t.Setenv(k, v)
	}
}

// TestProjectIsolationSingleServer attacks project isolation with the shipped
// deploy/nats/nats-single.conf and accounts.conf.
func TestProjectIsolationSingleServer(t *testing.T) {
	setShippedPasswords(t)
	t.Setenv("NATS_STORE_DIR", t.TempDir())
	opts, err := server.ProcessConfigFile("../../../deploy/nats/nats-single.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	attackProjectIsolation(t, srv.ClientURL(), 1)
}

// TestProjectIsolationCluster runs the same attack against three nodes of the shipped
// deploy/nats/nats-cluster.conf, with R3 streams and bucket.
func TestProjectIsolationCluster(t *testing.T) {
	setShippedPasswords(t)
	t.Setenv("SERVER_NAME", "replaced-per-node")
	cluster := natstest.StartCluster(t, 3, func(int) *server.Options {
		opts, err := server.ProcessConfigFile("../../../deploy/nats/nats-cluster.conf")
		if err != nil {
			t.Fatal(err)
		}
		return opts
	})
	cluster.WaitForJetStream(connectAs(t, cluster.URLs(), "apiops-admin", adminPassword))
	attackProjectIsolation(t, cluster.URLs(), 3)
}

// hostile is a connected identity that records everything it receives, and what it
// sent itself, which it sees again on its own subscriptions.
type hostile struct {
	nc *nats.Conn

	mu       sync.Mutex
	received []*nats.Msg
	own      map[string]bool // subject and data of what it published
	targets  map[string]bool // the reply subjects it named, where answers may come
	changed  chan struct{}   // closed and replaced at every message received
}

func newHostile() *hostile {
	return &hostile{own: map[string]bool{}, targets: map[string]bool{}, changed: make(chan struct{})}
}

func (h *hostile) record(m *nats.Msg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.received = append(h.received, m)
	close(h.changed)
	h.changed = make(chan struct{})
}

// sent notes a message it published, so that seeing it again is not taken for a leak.
func (h *hostile) sent(subject string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.own[subject+"\x00"+string(data)] = true
}

// publish publishes data on subject, with reply as its reply subject when not "".
func (h *hostile) publish(t *testing.T, subject, reply string, data []byte) {
	t.Helper()
	h.sent(subject, data)
	if reply != "" {
		h.mu.Lock()
		h.targets[reply] = true
		h.mu.Unlock()
	}
	publish := func() error { return h.nc.PublishRequest(subject, reply, data) }
	if reply == "" {
		publish = func() error { return h.nc.Publish(subject, data) }
	}
	if err := publish(); err != nil {
		t.Fatal(err)
	}
}

func (h *hostile) isOwn(m *nats.Msg) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.own[m.Subject+"\x00"+string(m.Data)]
}

// awaitReceived waits until at least n of the messages received match.
func (h *hostile) awaitReceived(t *testing.T, what string, n int, match func(*nats.Msg) bool, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		received, changed := h.received, h.changed
		h.mu.Unlock()
		got := 0
		for _, m := range received {
			if match(m) {
				got++
			}
		}
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("team-a received %d of %d %s within %v", got, n, what, timeout)
		}
	}
}

func connectAs(t *testing.T, url, user, password string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.UserInfo(user, password), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// isolation is the worker, the operator and the attacker of one run.
type isolation struct {
	sim      *simulator.Server
	api      *apiFront
	url      string // NATS
	logs     *watchedLog
	httpAddr string
	h        *hostile
	admin    *nats.Conn
	adminC   *client.Client
}

// readyz is the worker's /readyz: its status code and body.
func (iso *isolation) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + iso.httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// myProjectWithin has the operator request a MyProject command and fails unless its
// result comes within d: what every attack must leave working.
func (iso *isolation) myProjectWithin(t *testing.T, id string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	r, err := iso.adminC.Request(ctx, &messages.Command{ID: id, Project: "MyProject",
		Params: &messages.CredentialTruststoreSet{Username: "api-user", KeystoreName: "trust-2026"}})
	if err != nil || r.Status != messages.StatusSucceeded {
		t.Errorf("MyProject's %s after the attack: %+v, %v (after %v)", id, r, err, time.Since(start))
	}
	if code, body := iso.readyz(t); code != http.StatusOK || body != "ready: active\n" {
		t.Errorf("the worker after the attack: /readyz %d %q", code, body)
	}
}

func attackProjectIsolation(t *testing.T, url string, replicas int) {
	sim, simURL, token := workertest.Simulator(t, "../../../testdata/apiops-seed.json")
	api := newAPIFront(t, simURL)
	apiURL := api.url

	// The worker: the real program, as the shipped worker user in account APIOPS.
	sealKeys := t.TempDir()
	sealKey, err := seal.GenerateKeyFile(filepath.Join(sealKeys, "current.xk"))
	if err != nil {
		t.Fatal(err)
	}
	logs := newWatchedLog()
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() {
		exit <- Run(ctx, []string{"--nats-url", url, "--nats-user", "apiops-worker", "--apiops-url", apiURL,
			"--http-addr", "127.0.0.1:0", "--replicas", strconv.Itoa(replicas), "--seal-keys", sealKeys,
			"--watch-projects", "MyProject"}, // the expiry watch, with the shipped permissions too
			envFrom(map[string]string{"NATS_PASSWORD": workerPassword, "APIOPS_TOKEN": token}), logs)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-exit; code != 0 {
			t.Errorf("the worker exited with %d", code)
		}
	})
	logs.waitFor(t, `"msg":"worker started"`, 60*time.Second)
	logs.waitFor(t, `"msg":"serving metrics and health"`, 5*time.Second)
	iso := &isolation{sim: sim, api: api, url: url, logs: logs}
	for l := range strings.SplitSeq(logs.String(), "\n") {
		var line struct {
			Msg, Addr string
		}
		if json.Unmarshal([]byte(l), &line) == nil && line.Msg == "serving metrics and health" {
			iso.httpAddr = line.Addr
		}
	}

	// The attacker: team-a, in its own account TEAM_A, which it may use as it likes.
	// It subscribes to everything there, and whatever arrives is checked at the end.
	h := newHostile()
	iso.h = h
	h.nc = connectAs(t, url, "team-a", teamAPassword, nats.CustomInboxPrefix("_INBOX.TeamA"))
	for _, subject := range []string{">", "$JS.>", "$KV.>", "$SRV.>", "$SYS.>", "_INBOX.>", "_APIOPS_WORKER_INBOX.>", "_R_.>"} {
		sub, err := h.nc.Subscribe(subject, h.record)
		if err != nil {
			t.Fatal(err)
		}
		_ = sub.SetPendingLimits(-1, -1)
	}
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := h.nc.LastError(); err != nil {
		t.Fatalf("team-a may not subscribe in its own account: %v", err)
	}
	// Requests that would make the server or the worker answer with another project's
	// data: each stays in team-a's account, where JetStream is off and nothing of the
	// worker's answers.
	steal := "_INBOX.TeamA.steal"
	stolen, _ := h.nc.SubscribeSync(steal)
	_ = stolen.SetPendingLimits(-1, -1)
	forbidden := []string{
		"$JS.API.CONSUMER.MSG.NEXT.APIOPS_COMMANDS.apiops-worker",
		"$JS.API.CONSUMER.CREATE.APIOPS_COMMANDS.steal.apiops.cmd.MyProject.>",
		"$JS.API.CONSUMER.CREATE.APIOPS_RESULTS.steal.apiops.result.MyProject.>",
		"$JS.API.CONSUMER.CREATE.APIOPS_DEAD.steal.apiops.dlq.MyProject.>",
		"$JS.API.CONSUMER.CREATE.APIOPS_EXPIRY.steal.apiops.expiry.MyProject",
		"$JS.API.STREAM.MSG.GET.APIOPS_COMMANDS",
		"$JS.API.DIRECT.GET.KV_APIOPS_IDEMPOTENCY",
		"$KV.APIOPS_IDEMPOTENCY.steal",
		"$JS.API.STREAM.INFO.APIOPS_COMMANDS",
		"$SRV.INFO",
		"$SRV.PING.apiops-worker",
		"apiops.worker.status",
		"apiops.cmd.MyProject.credential.truststore.set",
		"apiops.result.TeamA.credential.truststore.set",
	}
	for _, subject := range forbidden {
		h.publish(t, subject, steal, []byte(`{"batch":1,"seq":1}`))
	}
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Headers that would purge or rewrite the stream for everyone are refused.
	hostileJS, _ := jetstream.New(h.nc)
	rollup := nats.NewMsg("apiops.cmd.TeamA.credential.truststore.set")
	rollup.Header.Set("Nats-Rollup", "all")
	rollup.Data = []byte(`{"id":"rollup-1","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`)
	h.sent(rollup.Subject, rollup.Data)
	if _, err := hostileJS.PublishMsg(context.Background(), rollup); err == nil {
		t.Error("a rollup on the command stream was accepted")
	}

	// The operator publishes for project MyProject, secrets included. An operator's
	// subscription to the worker's inbox shows the secrets do pass there: the control
	// that shows this test would see a leak to a team allowed the same.
	markerPassword := "pw-" + nuid.Next()
	markerFileText := string(keystorestest.File(keystorestest.Spec{Password: markerPassword, TrustStore: true})) // the worker opens it
	markerFile := base64.StdEncoding.EncodeToString([]byte(markerFileText))
	admin := connectAs(t, url, "apiops-admin", adminPassword)
	iso.admin = admin
	operatorView, _ := admin.SubscribeSync(DefaultInboxPrefix + ".>")
	_ = operatorView.SetPendingLimits(-1, -1)
	adminClient, err := client.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	iso.adminC = adminClient
	keystoreEnv := func(env string) messages.KeyStoreEnvironment {
		return messages.KeyStoreEnvironment{EnvironmentName: env, File: messages.NewSecret(markerFile), Password: messages.NewSecret(markerPassword), KeyStoreType: "PKCS12"}
	}
	projectB := []*messages.Command{
		{ID: "iso-create", Project: "MyProject", Params: &messages.KeystoreCreate{Name: "iso-2027",
			KeyStoreEnvironmentList: []messages.KeyStoreEnvironment{keystoreEnv("production"), keystoreEnv("staging")}}},
		{ID: "iso-exists", Project: "MyProject", Params: &messages.KeystoreCreate{Name: "trust-2025", // fails: a dead letter
			KeyStoreEnvironmentList: []messages.KeyStoreEnvironment{keystoreEnv("production")}}},
		{ID: "iso-set", Project: "MyProject", Params: &messages.CredentialTruststoreSet{Username: "api-user", KeystoreName: "trust-2026"}},
	}
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelWait()
	statuses := map[string]messages.Status{}
	if err := adminClient.Submit(waitCtx, projectB, func(i int, r *messages.Result) { statuses[projectB[i].ID] = r.Status }); err != nil {
		t.Fatal(err)
	}
	if statuses["iso-create"] != messages.StatusSucceeded || statuses["iso-exists"] != messages.StatusFailed || statuses["iso-set"] != messages.StatusSucceeded {
		t.Fatalf("project MyProject's results: %v", statuses)
	}
	if !sawMarker(t, operatorView, markerPassword) {
		t.Fatal("control: the operator's subscription to the worker's inbox did not see the keystore password pass; the test could not see a leak")
	}
	// The operator names TeamA's inbox as a MyProject command's replyTo: the worker
	// refuses it, so that the result cannot reach TeamA's account.
	if r := publishAndAwait(t, admin, "apiops.cmd.MyProject.credential.truststore.set",
		`{"id":"iso-misdirected","replyTo":"_INBOX.TeamA.misdirected","params":{"username":"api-user","keystoreName":"trust-2026"}}`); r.Status != messages.StatusRejected || r.Error == nil || r.Error.Field != "replyTo" {
		t.Errorf("a MyProject command replying into TeamA's inbox: %+v", r)
	}

	// team-a's own work still works: a request with its result via replyTo, a
	// tampered command, and a replyTo aimed at the worker's inbox or its subjects.
	teamA, err := client.New(h.nc, client.WithInboxPrefix("_INBOX.TeamA"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := teamA.Request(waitCtx, &messages.Command{ID: "own-1", Project: "TeamA",
		Params: &messages.CredentialTruststoreSet{Username: "svc-orders", KeystoreName: "team-a-trust"}})
	if err != nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("team-a's own request: %+v, %v", res, err)
	}
	// ...and so does sealing: team-a may learn the workers' key, and its sealed
	// keystore is opened.
	sealingA, err := client.New(h.nc, client.WithInboxPrefix("_INBOX.TeamA"), client.WithDiscoveredSealKey())
	if err != nil || sealingA.SealKey() != sealKey {
		t.Fatalf("team-a's key discovery: %v, key %q", err, sealingA.SealKey())
	}
	res, err = sealingA.Request(waitCtx, &messages.Command{ID: "own-sealed", Project: "TeamA", Params: &messages.KeystoreCreate{
		Name: "team-a-sealed", KeyStoreEnvironmentList: []messages.KeyStoreEnvironment{{EnvironmentName: "production",
			File: messages.NewSecret(keystorestest.Base64(keystorestest.Spec{Password: "team-a pw"})), Password: messages.NewSecret("team-a pw"), KeyStoreType: "PKCS12"}}}})
	if err != nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("team-a's sealed request: %+v, %v", res, err)
	}
	for body, field := range map[string]string{
		`{"id":"tamper-1","project":"MyProject","params":{"username":"api-user","keystoreName":"trust-2025"}}`:                    "project",
		`{"id":"reply-1","replyTo":"_APIOPS_WORKER_INBOX.x","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`:    "replyTo",
		`{"id":"reply-2","replyTo":"apiops.result.MyProject.x","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`: "replyTo",
		`{"id":"reply-3","replyTo":"_INBOX.MyProject.x","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`:        "replyTo",
	} {
		h.sent("apiops.cmd.TeamA.credential.truststore.set", []byte(body))
		r := publishAndAwait(t, h.nc, "apiops.cmd.TeamA.credential.truststore.set", body)
		if r.Status != messages.StatusRejected || r.Error == nil || r.Error.Field != field {
			t.Errorf("%s: result %+v, want rejected for %s", body, r, field)
		}
	}

	// Service discovery and the status endpoint answer under the worker's permissions.
	for _, subject := range []string{"$SRV.PING.apiops-worker", "$SRV.INFO.apiops-worker", "$SRV.STATS.apiops-worker", "apiops.worker.status"} {
		reply, err := admin.Request(subject, nil, 10*time.Second)
		if err != nil {
			t.Errorf("%s: %v", subject, err)
		} else if !bytes.Contains(reply.Data, []byte("apiops-worker")) && !bytes.Contains(reply.Data, []byte(`"ready":"yes"`)) {
			t.Errorf("%s answered %s", subject, reply.Data)
		}
	}

	t.Run("team-a's own flow", func(t *testing.T) { ownFlow(t, iso, sealKey) })
	t.Run("ids are scoped by project", func(t *testing.T) { attackIDs(t, h, teamA, admin, adminClient, sim) })
	t.Run("reply subjects stay in the team's account", func(t *testing.T) { attackReplies(t, iso) })
	t.Run("subjects outside the imports", func(t *testing.T) { attackSubjects(t, iso) })
	t.Run("an operator's long subject", func(t *testing.T) { attackLongSubject(t, iso) })
	t.Run("commands just under the size limit", func(t *testing.T) { attackLargeCommands(t, iso) })
	t.Run("APIOps quotes sealed secrets", func(t *testing.T) { attackQuotedSecrets(t, iso) })
	t.Run("storage", func(t *testing.T) { attackStorage(t, iso) })
	t.Run("a backlog of 5,000", func(t *testing.T) { attackBacklog(t, iso) })
	t.Run("forged headers", func(t *testing.T) { attackHeaders(t, iso) })
	// Last: TeamA's commands wait out a Retry-After of 15 minutes.
	t.Run("APIOps refuses one tenant for 15 minutes", func(t *testing.T) { attackTenantRateLimit(t, iso) })

	// What team-a received, all of it: its own results, its own acks and answers to
	// its own requests, nothing else.
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	received, targets := h.received, h.targets
	h.mu.Unlock()
	// Secrets, and what only project MyProject's commands and results name: its ids,
	// keystore and credential. (team-a's own tampered command names MyProject itself.)
	projectBOnly := []string{markerPassword, markerFile, markerFileText, token, "iso-2027", "iso-create", "iso-exists", "iso-set",
		"iso-misdirected", "rotation-0001", "after-replies", "after-subjects", "after-row-", "api-user", "trust-2026"}
	sawOwnResult := false
	for _, m := range received {
		if h.isOwn(m) {
			continue
		}
		seen := m.Subject + " " + fmt.Sprint(m.Header) + " " + string(m.Data)
		for _, secret := range projectBOnly {
			if strings.Contains(seen, secret) {
				t.Errorf("team-a received %q on %s: %s", secret, m.Subject, seen)
			}
		}
		if strings.Contains(m.Subject, "MyProject") && !targets[m.Subject] {
			t.Errorf("team-a received a message on %s", m.Subject)
		}
		sawOwnResult = sawOwnResult || strings.HasPrefix(m.Subject, "apiops.result.TeamA.")
	}
	if !sawOwnResult {
		t.Error("team-a's subscriptions received none of its results: they could not have seen a leak either")
	}
	// What came back to the requests for the worker's data: the server's "no
	// responders" and JetStream's errors, from team-a's own account, which has no
	// JetStream.
	for {
		m, err := stolen.NextMsg(100 * time.Millisecond)
		if err != nil {
			break
		}
		var answer struct {
			Type  string
			Error *struct{ Code int }
		}
		if m.Header.Get("Status") != "503" && (json.Unmarshal(m.Data, &answer) != nil || !strings.HasPrefix(answer.Type, "io.nats.jetstream.api.v1.") || answer.Error == nil) {
			t.Errorf("team-a got an answer to a request for the worker's data: %s %v", m.Data, m.Header)
		}
	}
	// The expiry watch published MyProject's table where operators read it; team-a's
	// subscriptions above saw none of it.
	adminJS, _ := jetstream.New(iso.admin)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		tables, err := expiry.ReadTables(context.Background(), adminJS, "apiops", []string{"MyProject"})
		if err == nil && len(tables) == 1 && len(tables[0].Entries) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("no expiry table of MyProject for the operators: %+v, %v", tables, err)
			break
		}
	}
	if strings.Contains(logs.String(), "Permissions Violation") {
		t.Errorf("the worker's permissions refused it something: %s", logs.String())
	}
}

// ownFlow is team-a's work, end to end across the accounts: JetStream acknowledges its
// publish and drops a second one with the same Nats-Msg-Id, the result comes on its
// project's result subject and on its replyTo, and the workers' service INFO answers
// with the key to seal for.
func ownFlow(t *testing.T, iso *isolation, sealKey string) {
	nc := iso.h.nc
	results, err := nc.SubscribeSync("apiops.result.TeamA.>")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = results.Unsubscribe() }()
	replyTo := messages.ReplyInbox("TeamA") + nuid.Next()
	replies, err := nc.SubscribeSync(replyTo)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = replies.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := nats.NewMsg("apiops.cmd.TeamA.credential.truststore.set")
	msg.Header.Set(messages.HeaderMsgID, messages.MsgID("TeamA", "own-flow-1"))
	msg.Data = []byte(`{"id":"own-flow-1","replyTo":"` + replyTo + `","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`)
	iso.h.sent(msg.Subject, msg.Data)
	first, err := js.PublishMsg(ctx, msg)
	if err != nil || first.Stream != "APIOPS_COMMANDS" || first.Sequence == 0 || first.Duplicate {
		t.Fatalf("team-a's publish: ack %+v, %v", first, err)
	}
	again, err := js.PublishMsg(ctx, msg)
	if err != nil || !again.Duplicate || again.Sequence != first.Sequence {
		t.Errorf("team-a's second publish with Nats-Msg-Id %s: ack %+v, %v; want a duplicate of %d", msg.Header.Get(messages.HeaderMsgID), again, err, first.Sequence)
	}
	for what, sub := range map[string]*nats.Subscription{"result subject": results, "replyTo": replies} {
		for {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				t.Fatalf("team-a's result on its %s: %v", what, err)
			}
			var r messages.Result
			if json.Unmarshal(m.Data, &r) == nil && r.ID == "own-flow-1" {
				if r.Status != messages.StatusSucceeded || r.Project != "TeamA" {
					t.Errorf("team-a's result on its %s: %+v", what, r)
				}
				break
			}
		}
	}
	key, instances, err := client.DiscoverSealKey(ctx, nc, messages.DefaultPrefix)
	if err != nil || key != sealKey || len(instances) != 1 {
		t.Errorf("team-a's service discovery: key %q, instances %+v, %v", key, instances, err)
	}
}

// attackReplies names, as the reply subject of team-a's commands and of its service
// INFO requests, the subjects that JetStream's acknowledgement or the worker's answer
// would have overwritten in a shared account: the lease, another project's
// idempotency record, its results, dead letters and commands. The server maps every
// such reply into team-a's own account, where the answers arrive, and writes nothing in
// the worker's.
func attackReplies(t *testing.T, iso *isolation) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, _ := jetstream.New(iso.admin)
	kv, err := js.KeyValue(ctx, "APIOPS_IDEMPOTENCY")
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	leaseKey := "lease." + b64([]byte("apiops-worker"))
	recordKey := "result." + b64([]byte("MyProject")) + "." + b64([]byte("iso-set"))
	leaseBefore, err := kv.Get(ctx, leaseKey)
	if err != nil {
		t.Fatalf("the lease: %v", err)
	}
	recordBefore, err := kv.Get(ctx, recordKey)
	if err != nil {
		t.Fatalf("MyProject's record of iso-set: %v", err)
	}
	// The operator watches every write to the bucket and every message on MyProject's
	// subjects, and TeamA's commands, while the attack lasts.
	watch := func(subject string) *nats.Subscription {
		sub, err := iso.admin.SubscribeSync(subject)
		if err != nil {
			t.Fatal(err)
		}
		_ = sub.SetPendingLimits(-1, -1)
		return sub
	}
	kvWrites, myProject, teamACommands := watch("$KV.APIOPS_IDEMPOTENCY.>"), watch("apiops.*.MyProject.>"), watch("apiops.cmd.TeamA.>")
	if err := iso.admin.Flush(); err != nil {
		t.Fatal(err)
	}
	logsBefore := len(iso.logs.String())

	targets := []string{
		"$KV.APIOPS_IDEMPOTENCY." + leaseKey,
		"$KV.APIOPS_IDEMPOTENCY." + recordKey,
		"apiops.result.MyProject.x",
		"apiops.dlq.MyProject.x",
		"apiops.cmd.MyProject.credential.truststore.set",
		"apiops.cmd.TeamA.credential.truststore.set", // one of its own imports: no loop
	}
	const rounds = 5
	for round := range rounds {
		for i, target := range targets {
			// Rejected at once (no keystoreName), so that the attack costs APIOps nothing.
			body := fmt.Appendf(nil, `{"id":"reflect-%d-%d","params":{"username":"svc-orders"}}`, round, i)
			iso.h.publish(t, "apiops.cmd.TeamA.credential.truststore.set", target, body)
			iso.h.publish(t, "$SRV.INFO.apiops-worker", target, nil)
		}
	}
	if err := iso.h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Every acknowledgement and every INFO answer came back to team-a's own account, on
	// the subject it named.
	isTarget := func(m *nats.Msg) bool { return slices.Contains(targets, m.Subject) && !iso.h.isOwn(m) }
	iso.h.awaitReceived(t, "acknowledgements on the subjects it named", rounds*len(targets), func(m *nats.Msg) bool {
		return isTarget(m) && isAck(m)
	}, 10*time.Second)
	iso.h.awaitReceived(t, "service INFO answers on the subjects it named", rounds*len(targets), func(m *nats.Msg) bool {
		return isTarget(m) && isInfo(m)
	}, 10*time.Second)

	iso.myProjectWithin(t, "after-replies", 3*time.Second)

	// Nothing of the attack was written in the worker's account.
	leaseAfter, err := kv.Get(ctx, leaseKey)
	if err != nil {
		t.Fatalf("the lease after the attack: %v", err)
	}
	if !bytes.Equal(leaseAfter.Value(), leaseBefore.Value()) {
		t.Errorf("the lease was %s, is %s", leaseBefore.Value(), leaseAfter.Value())
	}
	recordAfter, err := kv.Get(ctx, recordKey)
	if err != nil {
		t.Fatalf("MyProject's record after the attack: %v", err)
	}
	if recordAfter.Revision() != recordBefore.Revision() || !bytes.Equal(recordAfter.Value(), recordBefore.Value()) {
		t.Errorf("MyProject's record of iso-set changed: revision %d → %d, %s", recordBefore.Revision(), recordAfter.Revision(), recordAfter.Value())
	}
	foreign := func(what string, sub *nats.Subscription, ours func(*nats.Msg) bool) {
		for {
			m, err := sub.NextMsg(100 * time.Millisecond)
			if err != nil {
				return
			}
			if !ours(m) {
				t.Errorf("%s: %s %v %s", what, m.Subject, m.Header, m.Data)
			}
		}
	}
	// The bucket holds the worker's records only: a lease, attempts, results.
	foreign("a write to the bucket", kvWrites, func(m *nats.Msg) bool { return !isAck(m) && !isInfo(m) })
	foreign("a message for MyProject", myProject, func(m *nats.Msg) bool {
		return m.Header.Get(messages.HeaderCommandID) == "after-replies" || bytes.Contains(m.Data, []byte(`"id":"after-replies"`))
	})
	// TeamA's command subjects in APIOPS carry what team-a published, and the workers'
	// answers to its INFO requests whose reply named one of those subjects: the server
	// passes a client's answer that lands on an import on through it, once (the
	// forwarded copy has no reply). It is TeamA's own command, rejected as invalid, as
	// if team-a had published the answer itself. JetStream's acknowledgements are not
	// passed on.
	foreign("a command of TeamA's", teamACommands, func(m *nats.Msg) bool { return iso.h.isOwn(m) || isInfo(m) && m.Reply == "" })
	for _, bad := range []string{"not a lease record", "standby: this instance no longer holds the lease", "fenced"} {
		if strings.Contains(iso.logs.String()[logsBefore:], bad) {
			t.Errorf("the worker logged %q during the attack", bad)
		}
	}
}

// isAck tells whether m is JetStream's acknowledgement of a command's publish.
func isAck(m *nats.Msg) bool { return bytes.HasPrefix(m.Data, []byte(`{"stream":"APIOPS_COMMANDS"`)) }

// isInfo tells whether m is a worker's answer to a service INFO request.
func isInfo(m *nats.Msg) bool {
	return bytes.Contains(m.Data, []byte(`"type":"io.nats.micro.v1.info_response"`))
}

// attackSubjects publishes on subjects team-a imports nothing for: a command with an
// unknown type of about 4,000 characters, which once closed the worker's connection
// when its result subject exceeded the server's limit, and commands of MyProject's.
// None reaches the worker's account.
func attackSubjects(t *testing.T, iso *isolation) {
	cmds := iso.admin
	sub, err := cmds.SubscribeSync("apiops.>")
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	defer func() { _ = sub.Unsubscribe() }()
	if err := cmds.Flush(); err != nil {
		t.Fatal(err)
	}
	before := len(iso.sim.Requests())
	long := "apiops.cmd.TeamA.credential.truststore.set."
	long += strings.Repeat("x", 4050-len(long))
	iso.h.publish(t, long, "", []byte(`{"id":"long-1","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`))
	for _, subject := range []string{"apiops.cmd.MyProject.credential.truststore.set", "apiops.cmd.MyProject.keystore.delete", "apiops.cmd.MyProject.plan"} {
		iso.h.publish(t, subject, "", []byte(`{"id":"inject-1","params":{"username":"svc-injected","keystoreName":"trust-2025"}}`))
	}
	if err := iso.h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if !iso.h.nc.IsConnected() {
		t.Fatalf("team-a's connection closed: %v", iso.h.nc.LastError())
	}
	iso.myProjectWithin(t, "after-subjects", 3*time.Second)
	for {
		m, err := sub.NextMsg(100 * time.Millisecond)
		if err != nil {
			break
		}
		if bytes.Contains(m.Data, []byte("long-1")) || bytes.Contains(m.Data, []byte("inject-1")) || len(m.Subject) > 200 {
			t.Errorf("team-a's message reached the worker's account: %.200s", m.Subject)
		}
	}
	for _, r := range iso.sim.Requests()[before:] {
		if strings.Contains(string(r.Body), "svc-injected") || strings.Contains(r.Path, "svc-injected") {
			t.Errorf("APIOps received team-a's command for MyProject: %s %s", r.Method, r.Path)
		}
	}
}

// attackIDs uses one id in two projects, within JetStream's duplicate window and after
// it, squats another project's Nats-Msg-Id, and reuses an id for another type.
func attackIDs(t *testing.T, h *hostile, teamA *client.Client, adminNC *nats.Conn, admin *client.Client, sim *simulator.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	calls := func(path string) int {
		n := 0
		for _, r := range sim.Requests() {
			if r.Path == path && r.Status == 200 {
				n++
			}
		}
		return n
	}
	const (
		teamAPath = "/apiops/projects/TeamA/credentials/svc-orders/truststore/team-a-trust/"
		bPath     = "/apiops/projects/MyProject/credentials/api-user/truststore/trust-2026/"
	)
	request := func(c *client.Client, project, id string) *messages.Result {
		t.Helper()
		params := messages.Params(&messages.CredentialTruststoreSet{Username: "svc-orders", KeystoreName: "team-a-trust"})
		if project == "MyProject" {
			params = &messages.CredentialTruststoreSet{Username: "api-user", KeystoreName: "trust-2026"}
		}
		r, err := c.Request(ctx, &messages.Command{ID: id, Project: project, Params: params})
		if err != nil {
			t.Fatalf("%s %s: %v", project, id, err)
		}
		if r.Project != project || r.ID != id {
			t.Fatalf("%s %s got the result of %s %s", project, id, r.Project, r.ID)
		}
		return r
	}

	// Within the duplicate window: team-a takes the id first, as in the report.
	beforeA, beforeB := calls(teamAPath), calls(bPath)
	if r := request(teamA, "TeamA", "collide-1"); r.Status != messages.StatusSucceeded {
		t.Errorf("TeamA collide-1: %+v", r)
	}
	if r := request(admin, "MyProject", "collide-1"); r.Status != messages.StatusSucceeded || r.Attempts != 1 {
		t.Errorf("MyProject collide-1 was not executed: %+v", r)
	}
	// After the window JetStream keeps no Nats-Msg-Id, as a publish without one shows.
	bare := func(project, body string) *messages.Result {
		nc := h.nc
		if project == "MyProject" {
			nc = adminNC
		}
		return publishAndAwait(t, nc, "apiops.cmd."+project+".credential.truststore.set", body)
	}
	if r := bare("TeamA", `{"id":"collide-2","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`); r.Status != messages.StatusSucceeded || r.Attempts != 1 {
		t.Errorf("TeamA collide-2: %+v", r)
	}
	if r := bare("MyProject", `{"id":"collide-2","params":{"username":"api-user","keystoreName":"trust-2026"}}`); r.Status != messages.StatusSucceeded || r.Attempts != 1 {
		t.Errorf("MyProject collide-2 was not executed: %+v", r)
	}
	if a, b := calls(teamAPath)-beforeA, calls(bPath)-beforeB; a != 2 || b != 2 {
		t.Errorf("APIOps calls: TeamA %d, MyProject %d; want 2 each", a, b)
	}

	// team-a squats MyProject's next Nats-Msg-Id with a command of its own: JetStream
	// drops MyProject's publish as a duplicate, and the client publishes it again.
	squat := nats.NewMsg("apiops.cmd.TeamA.credential.truststore.set")
	squat.Header.Set(messages.HeaderMsgID, messages.MsgID("MyProject", "rotation-0001"))
	squat.Data = []byte(`{"id":"squat-1","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`)
	hostileJS, _ := jetstream.New(h.nc)
	h.sent(squat.Subject, squat.Data)
	if _, err := hostileJS.PublishMsg(ctx, squat); err != nil {
		t.Fatal(err)
	}
	beforeB = calls(bPath)
	if r := request(admin, "MyProject", "rotation-0001"); r.Status != messages.StatusSucceeded || calls(bPath) != beforeB+1 {
		t.Errorf("MyProject rotation-0001 after a squatted Nats-Msg-Id: %+v, %d calls", r, calls(bPath)-beforeB)
	}

	// The same id again in one project: same type answers from the record, another
	// type is rejected naming the first, and APIOps sees neither.
	beforeA = calls(teamAPath)
	if r := request(teamA, "TeamA", "collide-1"); r.Status != messages.StatusSucceeded || calls(teamAPath) != beforeA {
		t.Errorf("TeamA collide-1 again: %+v, %d more calls", r, calls(teamAPath)-beforeA)
	}
	deletes := len(sim.Requests())
	r, err := teamA.Request(ctx, &messages.Command{ID: "collide-1", Project: "TeamA", Params: &messages.KeystoreDelete{KeystoreName: "team-a-trust"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != messages.StatusRejected || r.Error == nil || r.Error.Code != messages.CodeIDReused || r.Error.Field != "id" ||
		!strings.Contains(r.Error.Message, "credential.truststore.set") {
		t.Errorf("id reused for another type: %+v (error %+v)", r, r.Error)
	}
	if len(sim.Requests()) != deletes {
		t.Errorf("a rejected reuse reached APIOps: %+v", sim.Requests()[deletes:])
	}
	if _, ok := sim.Keystore("TeamA", "team-a-trust"); !ok {
		t.Error("the keystore was deleted")
	}
	// The first command's record stands.
	if r := request(teamA, "TeamA", "collide-1"); r.Status != messages.StatusSucceeded || r.Type != "credential.truststore.set" {
		t.Errorf("TeamA collide-1 after the reuse: %+v", r)
	}
}

// publishAndAwait publishes body to subject through JetStream, without Nats-Msg-Id,
// and returns its result as published on the result subject.
func publishAndAwait(t *testing.T, nc *nats.Conn, subject, body string) *messages.Result {
	t.Helper()
	var cmd struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(body), &cmd); err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(messages.Subjects{}.ResultFor(subject))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, subject, []byte(body)); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("%s: no result: %v", body, err)
		}
		var r messages.Result
		if json.Unmarshal(msg.Data, &r) == nil && r.ID == cmd.ID {
			return &r
		}
	}
}

// sawMarker reports whether any message pending on sub holds marker.
func sawMarker(t *testing.T, sub *nats.Subscription, marker string) bool {
	t.Helper()
	for {
		msg, err := sub.NextMsg(100 * time.Millisecond)
		if err != nil {
			return false
		}
		if bytes.Contains(msg.Data, []byte(marker)) {
			return true
		}
	}
}

// watchedLog is the program's log output, which a test can wait on.
type watchedLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced at every write
}

func newWatchedLog() *watchedLog { return &watchedLog{changed: make(chan struct{})} }

func (l *watchedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
	return l.buf.Write(p)
}

func (l *watchedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor waits until the log holds text.
func (l *watchedLog) waitFor(t *testing.T, text string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		found, changed := strings.Contains(l.buf.String(), text), l.changed
		l.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("the log never said %s; it says:\n%s", text, l.String())
		}
	}
}
