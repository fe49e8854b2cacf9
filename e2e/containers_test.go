// Package e2e runs apiops-worker as containers: NATS, the simulator and the worker
// images, with testcontainers-go, and the Compose stack. Images cannot be pulled
// here: `make image nats-image` builds them from binaries compiled on this machine;
// NATS_IMAGE and APIOPS_WORKER_IMAGE name others. Without a Docker engine the tests
// skip, saying so.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/apiops-worker/apiops-worker/messages"
)

func image(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

var (
	natsImage   = image("NATS_IMAGE", "apiops-nats:local")
	workerImage = image("APIOPS_WORKER_IMAGE", "apiops-worker:latest")
)

const simToken = "container-token"

// stack is NATS, the simulator and the worker on one Docker network.
type stack struct {
	nats, sim, worker *testcontainers.DockerContainer
}

func startStack(t *testing.T, ctx context.Context, simArgs ...string) *stack {
	t.Helper()
	testcontainers.SkipIfProviderIsNotHealthy(t)
	nw, err := network.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	testcontainers.CleanupNetwork(t, nw)
	s := &stack{}
	s.nats, err = testcontainers.Run(ctx, natsImage,
		network.WithNetwork([]string{"nats"}, nw),
		testcontainers.WithExposedPorts("4222/tcp"),
		testcontainers.WithWaitStrategy(wait.ForListeningPort("4222/tcp")),
	)
	testcontainers.CleanupContainer(t, s.nats)
	if err != nil {
		t.Fatalf("NATS container from %s (build it with make nats-image): %v", natsImage, err)
	}
	s.sim, err = testcontainers.Run(ctx, workerImage,
		network.WithNetwork([]string{"apiops-sim"}, nw),
		testcontainers.WithEntrypoint("/usr/local/bin/apiops-sim"),
		testcontainers.WithCmd(append([]string{"--addr", "0.0.0.0:8085", "--seed", "/usr/share/apiops-worker/apiops-seed.json"}, simArgs...)...),
		testcontainers.WithEnv(map[string]string{"APIOPS_TOKEN": simToken}),
		testcontainers.WithExposedPorts("8085/tcp"),
		testcontainers.WithWaitStrategy(wait.ForListeningPort("8085/tcp")),
	)
	testcontainers.CleanupContainer(t, s.sim)
	if err != nil {
		t.Fatalf("simulator container from %s (build it with make image): %v", workerImage, err)
	}
	s.worker, err = testcontainers.Run(ctx, workerImage,
		network.WithNetwork([]string{"worker"}, nw),
		testcontainers.WithEnv(map[string]string{
			"NATS_URL": "nats://nats:4222", "APIOPS_URL": "http://apiops-sim:8085", "APIOPS_TOKEN": simToken,
			"APIOPS_WORKER_ACK_WAIT": "3s", "APIOPS_WORKER_RETRY_MAX": "1s",
		}),
		testcontainers.WithExposedPorts("9090/tcp"),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/readyz").WithPort("9090/tcp").WithStartupTimeout(30*time.Second)),
	)
	testcontainers.CleanupContainer(t, s.worker)
	if err != nil {
		t.Fatalf("worker container: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.logs(t, "worker", s.worker)
		}
	})
	return s
}

// logs prints a container's output, so a failure on CI says what the worker saw.
func (s *stack) logs(t *testing.T, name string, c *testcontainers.DockerContainer) {
	r, err := c.Logs(context.Background())
	if err != nil {
		t.Logf("%s logs: %v", name, err)
		return
	}
	defer r.Close()
	out, _ := io.ReadAll(r)
	t.Logf("%s logs:\n%s", name, out)
}

// connect connects to NATS through its mapped port. Docker's port proxy accepts
// connections before the server in the container does, so a refused handshake is
// tried again for a while.
func (s *stack) connect(t *testing.T, ctx context.Context) *nats.Conn {
	t.Helper()
	url, err := s.nats.PortEndpoint(ctx, "4222/tcp", "nats")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		nc, err := nats.Connect(url)
		if err == nil {
			t.Cleanup(nc.Close)
			return nc
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to %s: %v", url, err)
		}
	}
}

func TestContainerRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := startStack(t, ctx)
	nc := s.connect(t, ctx)
	inbox := "_INBOX.MyProject." + nats.NewInbox()[len("_INBOX."):] // replies only under the project's inbox
	replies, _ := nc.SubscribeSync(inbox)
	body := `{"id":"container-1","replyTo":"` + inbox + `","params":{"username":"api-user","keystoreName":"trust-2026"}}`
	if _, err := nc.Request("apiops.cmd.MyProject.credential.truststore.set", []byte(body), 5*time.Second); err != nil {
		t.Fatalf("publish: %v", err)
	}
	reply, err := replies.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res messages.Result
	if err := json.Unmarshal(reply.Data, &res); err != nil || res.Status != messages.StatusSucceeded || len(res.DeploymentResult.EnvironmentResults) != 2 {
		t.Fatalf("result %s", reply.Data)
	}
}

// TestNATSRestartMidBatch restarts the NATS container while the worker works through
// a batch; JetStream keeps its data in the container, and every command ends with
// exactly one stored result.
func TestNATSRestartMidBatch(t *testing.T) {
	ctx := context.Background()
	s := startStack(t, ctx, "--latency", "50ms")
	nc := s.connect(t, ctx)
	js, _ := jetstream.New(nc)
	const n = 300
	for i := range n {
		body := fmt.Sprintf(`{"id":"restart-%03d","params":{"username":"api-user","keystoreName":"trust-2026"}}`, i)
		msg := &nats.Msg{Subject: "apiops.cmd.MyProject.credential.truststore.set", Data: []byte(body), Header: nats.Header{messages.HeaderMsgID: {fmt.Sprintf("restart-%03d", i)}}}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	results, _ := js.Stream(ctx, "APIOPS_RESULTS")
	stored := func(js jetstream.Stream) uint64 {
		info, err := js.Info(ctx)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	for stored(results) < n/4 {
		time.Sleep(20 * time.Millisecond)
	}
	if before := stored(results); before >= n {
		t.Fatalf("all %d commands finished before the restart: the test proves nothing", before)
	}
	timeout := 10 * time.Second
	if err := s.nats.Stop(ctx, &timeout); err != nil {
		t.Fatal(err)
	}
	if err := s.nats.Start(ctx); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	js, _ = jetstream.New(s.connect(t, ctx)) // the mapped port changed
	deadline := time.Now().Add(90 * time.Second)
	var commands, res jetstream.Stream
	for {
		var err1, err2 error
		commands, err1 = js.Stream(ctx, "APIOPS_COMMANDS")
		res, err2 = js.Stream(ctx, "APIOPS_RESULTS")
		if err1 == nil && err2 == nil && stored(commands) == 0 && stored(res) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %d results stored, commands left: %v", stored(res), err1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cons, err := res.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(n+50, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for m := range batch.Messages() {
		ids[m.Headers().Get(messages.HeaderCommandID)]++
	}
	if len(ids) != n {
		t.Errorf("%d distinct results, want %d", len(ids), n)
	}
	for id, count := range ids {
		if count != 1 {
			t.Errorf("%s: %d stored results", id, count)
		}
	}
}
