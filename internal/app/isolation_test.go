package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/apiops-worker/apiops-worker/apiops/apiopstest"
	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/internal/natstest"
	"github.com/apiops-worker/apiops-worker/internal/workertest"
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
	opts, err := server.ProcessConfigFile("../../deploy/nats/nats-single.conf")
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
		opts, err := server.ProcessConfigFile("../../deploy/nats/nats-cluster.conf")
		if err != nil {
			t.Fatal(err)
		}
		return opts
	})
	cluster.WaitForJetStream(connectAs(t, cluster.URLs(), "apiops-admin", adminPassword))
	attackProjectIsolation(t, cluster.URLs(), 3)
}

// hostile is a connected identity that records everything it receives and every error
// the server reports to it.
type hostile struct {
	nc *nats.Conn

	mu       sync.Mutex
	received []*nats.Msg
	errs     []error
}

func (h *hostile) record(m *nats.Msg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.received = append(h.received, m)
}

func (h *hostile) violations() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, err := range h.errs {
		if errors.Is(err, nats.ErrPermissionViolation) {
			b.WriteString(err.Error() + "\n")
		}
	}
	return b.String()
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

func attackProjectIsolation(t *testing.T, url string, replicas int) {
	sim, apiURL, token := workertest.Simulator(t, "../../testdata/apiops-seed.json")

	// The worker: the real program, as the shipped worker user.
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
			"--http-addr", "", "--replicas", strconv.Itoa(replicas), "--seal-keys", sealKeys},
			envFrom(map[string]string{"NATS_PASSWORD": workerPassword, "APIOPS_TOKEN": token}), logs)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-exit; code != 0 {
			t.Errorf("the worker exited with %d", code)
		}
	})
	logs.waitFor(t, `"msg":"worker started"`, 60*time.Second)

	// The attacker: team-a, with exactly its shipped permissions.
	h := &hostile{}
	h.nc = connectAs(t, url, "team-a", teamAPassword, nats.CustomInboxPrefix("_INBOX.TeamA"), nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			h.mu.Lock()
			h.errs = append(h.errs, err)
			h.mu.Unlock()
		}))
	// Everything its permissions allow it to subscribe to, wildcards included, and
	// everything else it might try, which the server must refuse. Whatever arrives on
	// any of them is recorded and checked at the end.
	allowed := []string{"_INBOX.TeamA.>", "apiops.result.TeamA.>"}
	refusedSubs := []string{">", "*.>", "_INBOX.>", "_INBOX.*.>", "_APIOPS_WORKER_INBOX.>", "apiops.>", "apiops.*.MyProject.>",
		"apiops.cmd.>", "apiops.cmd.TeamA.>", "apiops.result.>", "apiops.result.MyProject.>", "apiops.dlq.>", "apiops.dlq.TeamA.>",
		"$JS.>", "$JS.EVENT.>", "$JS.ACK.>", "$KV.>", "$SRV.>", "apiops.worker.status"}
	for _, subject := range append(allowed, refusedSubs...) {
		if _, err := h.nc.Subscribe(subject, h.record); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Requests that would make the server or the worker answer into team-a's inbox
	// with another project's data: each publish must be refused.
	steal := "_INBOX.TeamA.steal"
	forbidden := []string{
		"$JS.API.CONSUMER.MSG.NEXT.APIOPS_COMMANDS.apiops-worker",
		"$JS.API.CONSUMER.CREATE.APIOPS_COMMANDS.steal.apiops.cmd.MyProject.>",
		"$JS.API.CONSUMER.CREATE.APIOPS_RESULTS.steal.apiops.result.MyProject.>",
		"$JS.API.CONSUMER.CREATE.APIOPS_DEAD.steal.apiops.dlq.MyProject.>",
		"$JS.API.STREAM.MSG.GET.APIOPS_COMMANDS",
		"$JS.API.DIRECT.GET.KV_APIOPS_IDEMPOTENCY",
		"$KV.APIOPS_IDEMPOTENCY.steal",
		"$JS.API.STREAM.INFO.APIOPS_COMMANDS",
		"$SRV.INFO",
		"apiops.worker.status",
		"apiops.cmd.MyProject.credential.truststore.set",
		"apiops.result.TeamA.credential.truststore.set",
	}
	for _, subject := range forbidden {
		if err := h.nc.PublishRequest(subject, steal, []byte(`{"batch":1,"seq":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Headers that would purge or rewrite the stream for everyone are refused.
	hostileJS, _ := jetstream.New(h.nc)
	rollup := nats.NewMsg("apiops.cmd.TeamA.credential.truststore.set")
	rollup.Header.Set("Nats-Rollup", "all")
	rollup.Data = []byte(`{"id":"rollup-1","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`)
	if _, err := hostileJS.PublishMsg(context.Background(), rollup); err == nil {
		t.Error("a rollup on the command stream was accepted")
	}

	// The operator publishes for project MyProject, secrets included. An operator's
	// subscription to the worker's inbox shows the secrets do pass there: the control
	// that shows this test would see a leak to a team allowed the same.
	markerPassword := "pw-" + nuid.Next()
	markerFileText := "file-" + nuid.Next()
	markerFile := base64.StdEncoding.EncodeToString([]byte(markerFileText))
	admin := connectAs(t, url, "apiops-admin", adminPassword)
	operatorView, _ := admin.SubscribeSync(DefaultInboxPrefix + ".>")
	_ = operatorView.SetPendingLimits(-1, -1)
	adminClient, err := client.New(admin)
	if err != nil {
		t.Fatal(err)
	}
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
			File: messages.NewSecret(base64.StdEncoding.EncodeToString([]byte("team-a file"))), Password: messages.NewSecret("team-a pw"), KeyStoreType: "PKCS12"}}}})
	if err != nil || res.Status != messages.StatusSucceeded {
		t.Fatalf("team-a's sealed request: %+v, %v", res, err)
	}
	for body, field := range map[string]string{
		`{"id":"tamper-1","project":"MyProject","params":{"username":"api-user","keystoreName":"trust-2025"}}`:                    "project",
		`{"id":"reply-1","replyTo":"_APIOPS_WORKER_INBOX.x","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`:    "replyTo",
		`{"id":"reply-2","replyTo":"apiops.result.MyProject.x","params":{"username":"svc-orders","keystoreName":"team-a-trust"}}`: "replyTo",
	} {
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

	t.Run("ids are scoped by project", func(t *testing.T) { attackIDs(t, h, teamA, admin, adminClient, sim) })

	// What team-a received, all of it: its own results, its own acks, nothing else.
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	received := h.received
	h.mu.Unlock()
	// Secrets, and what only project MyProject's commands and results name: its ids,
	// keystore and credential. (team-a's own tampered command names MyProject itself.)
	projectBOnly := []string{markerPassword, markerFile, markerFileText, token, "iso-2027", "iso-create", "iso-exists", "iso-set",
		"rotation-0001", "api-user", "trust-2026"}
	sawOwnResult := false
	for _, m := range received {
		seen := m.Subject + " " + fmt.Sprint(m.Header) + " " + string(m.Data)
		for _, secret := range projectBOnly {
			if strings.Contains(seen, secret) {
				t.Errorf("team-a received %q on %s: %s", secret, m.Subject, seen)
			}
		}
		if strings.Contains(m.Subject, "MyProject") {
			t.Errorf("team-a received a message on %s", m.Subject)
		}
		if m.Subject == steal {
			t.Errorf("team-a got an answer to a refused request: %s", m.Data)
		}
		sawOwnResult = sawOwnResult || strings.HasPrefix(m.Subject, "apiops.result.TeamA.")
	}
	if !sawOwnResult {
		t.Error("team-a's result subscription received nothing: it could not have seen a leak either")
	}
	violations := h.violations()
	for _, subject := range refusedSubs {
		if !strings.Contains(violations, `Subscription to "`+subject+`"`) {
			t.Errorf("team-a subscribed to %s; violations: %s", subject, violations)
		}
	}
	for _, subject := range forbidden {
		if !strings.Contains(violations, `Publish to "`+subject+`"`) {
			t.Errorf("team-a published to %s; violations: %s", subject, violations)
		}
	}
	if strings.Contains(logs.String(), "Permissions Violation") {
		t.Errorf("the worker's permissions refused it something: %s", logs.String())
	}
}

// attackIDs uses one id in two projects, within JetStream's duplicate window and after
// it, squats another project's Nats-Msg-Id, and reuses an id for another type.
func attackIDs(t *testing.T, h *hostile, teamA *client.Client, adminNC *nats.Conn, admin *client.Client, sim *apiopstest.Server) {
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
