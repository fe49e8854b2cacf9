package expiry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/expiry"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
)

var update = flag.Bool("update", false, "rewrite deploy/nats/jetstream/stream-APIOPS_EXPIRY.json from what the watcher sets up")

// TestOperatorConfigFile: deploy/nats/jetstream/stream-APIOPS_EXPIRY.json, for
// operators who run --manage-streams=false, is exactly what the watcher sets up with
// --replicas 3 (-update rewrites it), as worker's TestOperatorConfigFiles keeps the
// other streams' files.
func TestOperatorConfigFile(t *testing.T) {
	cluster := natstest.StartCluster(t, 3, nil)
	nc, err := nats.Connect(cluster.URLs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cluster.WaitForJetStream(nc)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := &expiry.StreamPublisher{JS: js, Prefix: "apiops", Replicas: 3, Manage: true}
	if err := pub.Publish(ctx, expiry.Table{Project: "MyProject", ReadAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, expiry.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Metadata = nil // the server's own version stamps
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // subjects hold ">"
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "deploy", "nats", "jetstream", "stream-"+expiry.StreamName+".json")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, buf.Bytes()) {
		t.Errorf("%s differs from what the watcher sets up (run with -update to rewrite it): %v\n%s", path, err, buf.Bytes())
	}
}
