package worker_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/apiops/apiopstest"
	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// TestDeployedNATSPermissions runs the worker as the user that
// deploy/nats/accounts.conf defines, with only the permissions given there, and a
// publisher allowed only its own project.
func TestDeployedNATSPermissions(t *testing.T) {
	for k, v := range map[string]string{
		"NATS_STORE_DIR": t.TempDir(), "APIOPS_WORKER_NATS_PASSWORD": "w-pw", "TEAM_A_NATS_PASSWORD": "a-pw",
		"APIOPS_ADMIN_NATS_PASSWORD": "adm-pw", "SYS_NATS_PASSWORD": "sys-pw",
	} {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile("../deploy/nats/nats-single.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	connect := func(user, password string) *nats.Conn {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, password), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}

	seed, _ := apiopstest.LoadSeed("../testdata/apiops-seed.json")
	api := httptest.NewServer(apiopstest.New(seed))
	defer api.Close()
	apiClient, _ := apiops.New(api.URL, apiops.StaticToken(seed.Token))
	w, err := worker.New(connect("apiops-worker", "w-pw"), apiClient, worker.Config{ManageStreams: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- w.Run(ctx) }()
	defer func() { cancel(); <-stopped }()

	teamA, err := client.New(connect("team-a", "a-pw"))
	if err != nil {
		t.Fatal(err)
	}
	reqCtx, cancelReq := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancelReq()
	res, err := teamA.Request(reqCtx, &messages.Command{ID: "perm-1", Project: "TeamA",
		Params: &messages.CredentialTruststoreSet{Username: "svc-orders", KeystoreName: "shared-trust-root"}})
	if err != nil {
		t.Fatalf("team-a's own project: %v", err)
	}
	if res.Status != messages.StatusSucceeded {
		t.Fatalf("result %+v", res)
	}
	denied, cancelDenied := context.WithTimeout(context.Background(), time.Second)
	defer cancelDenied()
	_, err = teamA.Publish(denied, &messages.Command{ID: "perm-2", Project: "MyProject",
		Params: &messages.CredentialTruststoreSet{Username: "api-user", KeystoreName: "trust-2026"}})
	if err == nil {
		t.Fatal("team-a published a command for another project")
	}
	// A failed command exercises the dead-letter permissions as well.
	res, err = teamA.Request(reqCtx, &messages.Command{ID: "perm-3", Project: "TeamA",
		Params: &messages.CredentialTruststoreSet{Username: "nobody", KeystoreName: "team-a-trust"}})
	if err != nil || res.Status != messages.StatusFailed {
		t.Fatalf("failed command: %+v %v", res, err)
	}
	admin, _ := jetstream.New(connect("apiops-admin", "adm-pw"))
	dead, err := admin.Stream(reqCtx, "APIOPS_DEAD")
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := dead.Info(reqCtx); info.State.Msgs != 1 {
		t.Errorf("%d dead letters, want 1", info.State.Msgs)
	}
	if err := w.Ready(); err != nil {
		t.Errorf("worker not ready: %v", err)
	}
}

// TestClusterConfigParses checks the 3-node example with the same accounts.
func TestClusterConfigParses(t *testing.T) {
	for k, v := range map[string]string{
		"SERVER_NAME": "nats-0", "APIOPS_WORKER_NATS_PASSWORD": "w", "TEAM_A_NATS_PASSWORD": "a",
		"APIOPS_ADMIN_NATS_PASSWORD": "adm", "SYS_NATS_PASSWORD": "s",
	} {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile("../deploy/nats/nats-cluster.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !opts.JetStream || !opts.SyncAlways || len(opts.Routes) != 3 || opts.Cluster.Name != "apiops" {
		t.Errorf("cluster options: jetstream %v sync %v routes %d cluster %q", opts.JetStream, opts.SyncAlways, len(opts.Routes), opts.Cluster.Name)
	}
}
