package client_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/internal/testkit/fakeworker"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// largeKeystoreCreate is a valid keystore.create of about size bytes: a real
// truststore for as many environments as it takes.
func largeKeystoreCreate(t *testing.T, id string, size int) *messages.Command {
	t.Helper()
	data, err := os.ReadFile("../testdata/keystores/trust-2027.p12")
	if err != nil {
		t.Fatal(err)
	}
	file := base64.StdEncoding.EncodeToString(data)
	p := &messages.KeystoreCreate{Name: "trust-" + id}
	for i := 0; len(p.KeyStoreEnvironmentList)*(len(file)+100) < size; i++ {
		p.KeyStoreEnvironmentList = append(p.KeyStoreEnvironmentList, messages.KeyStoreEnvironment{
			EnvironmentName: fmt.Sprintf("env-%04d", i), File: messages.NewSecret(file), Password: messages.NewSecret("changeit"), KeyStoreType: "PKCS12",
		})
	}
	return &messages.Command{ID: id, Type: "keystore.create", Project: "MyProject", Params: p}
}

func tooLarge(t *testing.T, err error) *client.TooLargeError {
	t.Helper()
	var e *client.TooLargeError
	if !errors.As(err, &e) {
		t.Fatalf("error %v, want a *client.TooLargeError", err)
	}
	return e
}

// TestTooLargeForTheWorkers: a command larger than the workers take is refused before
// it is published, naming its size and the limit: the smallest the running workers
// announce, or the workers' default when none does.
func TestTooLargeForTheWorkers(t *testing.T) {
	e := setup(t)
	ctx := testContext(t)

	// No worker announces a limit: the default.
	big := largeKeystoreCreate(t, "big-1", client.DefaultMaxCommandSize+10<<10)
	_, err := e.client.Publish(ctx, big)
	tl := tooLarge(t, err)
	if tl.Limit != client.DefaultMaxCommandSize || tl.Size <= tl.Limit || !strings.Contains(tl.LimitOf, "default") {
		t.Errorf("%+v", tl)
	}
	for _, want := range []string{"publish big-1: command too large: ", strconv.Itoa(tl.Size)[:3], "over the 524,288 (512 KiB) the workers' default --max-command-size allows"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	noSecret(t, "the error", err.Error())

	// Two workers announce theirs: the smaller counts, for a new client.
	fakeworker.AnnounceMetadata(t, e.nc, "", map[string]string{"max_command_size": "65536"})
	fakeworker.AnnounceMetadata(t, e.nc, "", map[string]string{"max_command_size": "100000"})
	if size, announced, err := client.DiscoverMaxCommandSize(ctx, e.nc, messages.DefaultPrefix); size != 64<<10 || !announced || err != nil {
		t.Errorf("DiscoverMaxCommandSize: %d %v %v", size, announced, err)
	}
	c, err := client.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	mid := largeKeystoreCreate(t, "mid-1", 80<<10)
	_, err = c.Publish(ctx, mid)
	if tl := tooLarge(t, err); tl.Limit != 64<<10 || tl.LimitOf != "the workers' --max-command-size" {
		t.Errorf("%+v", tl)
	}
	if !strings.Contains(err.Error(), "over the 65,536 (64 KiB) the workers' --max-command-size allows") {
		t.Errorf("error %q", err)
	}
	if err := c.Check(ctx, mid); err == nil {
		t.Error("Check passes a command too large")
	}
	// Submit checks every command before it publishes any.
	err = c.Submit(ctx, []*messages.Command{keystoreCreate("small-1", "PKCS12"), mid}, nil)
	if tooLarge(t, err); !strings.Contains(err.Error(), "command 1: publish mid-1: command too large") {
		t.Errorf("Submit: %v", err)
	}
	if _, err := c.Request(ctx, mid); !errors.As(err, new(*client.TooLargeError)) {
		t.Errorf("Request: %v", err)
	}
	if n := msgCount(t, e.commands); n != 0 {
		t.Fatalf("%d commands published", n)
	}

	// One under the limit, larger than every worker takes (16 KiB), is published.
	fits := largeKeystoreCreate(t, "fits-1", 40<<10)
	if err := c.Check(ctx, fits); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, fits); err != nil {
		t.Fatal(err)
	}
	if n := msgCount(t, e.commands); n != 1 {
		t.Errorf("%d commands published, want 1", n)
	}

	// A limit given is not asked for.
	given, err := client.New(e.nc, client.WithMaxCommandSize(20<<10))
	if err != nil {
		t.Fatal(err)
	}
	if tl := tooLarge(t, given.Check(ctx, fits)); tl.Limit != 20<<10 || tl.LimitOf != "WithMaxCommandSize" {
		t.Errorf("%+v", tl)
	}
	if _, err := client.New(e.nc, client.WithMaxCommandSize(-1)); err == nil {
		t.Error("a negative max command size is taken")
	}
}

// TestTooLargeForTheServer: when the server's max_payload is smaller than what the
// workers take, it is the limit, rather than NATS's bare "maximum payload exceeded".
func TestTooLargeForTheServer(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, MaxPayload: 48 << 10})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	commands, _ := fakeworker.CreateStreams(t, js, "")
	fakeworker.AnnounceMetadata(t, nc, "", map[string]string{"max_command_size": strconv.Itoa(worker.DefaultMaxCommandSize)})
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Publish(testContext(t), largeKeystoreCreate(t, "big-1", 60<<10))
	if tl := tooLarge(t, err); tl.Limit != 48<<10 || tl.LimitOf != "the NATS server's max_payload" {
		t.Errorf("%+v", tl)
	}
	if errors.Is(err, nats.ErrMaxPayload) || !strings.Contains(err.Error(), "over the 49,152 (48 KiB) the NATS server's max_payload allows") {
		t.Errorf("error %q", err)
	}
	if n := msgCount(t, commands); n != 0 {
		t.Errorf("%d commands published", n)
	}
}

// TestDefaultMaxCommandSizeIsTheWorkers: the publishers' fallback is the workers'
// default.
func TestDefaultMaxCommandSizeIsTheWorkers(t *testing.T) {
	if client.DefaultMaxCommandSize != worker.DefaultMaxCommandSize {
		t.Errorf("client.DefaultMaxCommandSize %d, worker.DefaultMaxCommandSize %d", client.DefaultMaxCommandSize, worker.DefaultMaxCommandSize)
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
