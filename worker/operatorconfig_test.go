package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/worker"
)

var update = flag.Bool("update", false, "rewrite deploy/nats/jetstream/ from what the worker sets up")

// TestOperatorConfigFiles: the stream and bucket configurations in
// deploy/nats/jetstream/, for operators who run --manage-streams=false, are exactly
// what the worker sets up with --replicas 3 (go test ./worker -run TestOperatorConfigFiles
// -update rewrites them).
func TestOperatorConfigFiles(t *testing.T) {
	cluster := natstest.StartCluster(t, 3, nil)
	nc := connectCluster(t, cluster)
	client, _ := apiops.New("http://127.0.0.1:1", apiops.StaticToken("unused"))
	w, err := worker.New(nc, client, worker.Config{ManageStreams: true, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	files := map[string]any{}
	for _, name := range []string{worker.DefaultCommandStream, worker.DefaultResultStream, worker.DefaultDeadStream, "KV_" + worker.DefaultIdempotencyBucket} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.Metadata = nil // the server's own version stamps
		files["stream-"+name+".json"] = cfg
	}
	// The worker makes every project's consumer itself, as projects appear: there is
	// none to ship.
	if shipped, _ := filepath.Glob(filepath.Join("..", "deploy", "nats", "jetstream", "consumer-*.json")); len(shipped) > 0 {
		t.Errorf("consumer configurations shipped, though the worker makes its consumers: %v", shipped)
	}
	for name, cfg := range files {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // subjects hold ">"
		enc.SetIndent("", "  ")
		if err := enc.Encode(cfg); err != nil {
			t.Fatal(err)
		}
		want := buf.Bytes()
		path := filepath.Join("..", "deploy", "nats", "jetstream", name)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the worker sets up (run with -update to rewrite it): %v\n%s", path, err, want)
		}
	}
}

func connectCluster(t *testing.T, cluster *natstest.Cluster) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(cluster.URLs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cluster.WaitForJetStream(nc)
	return nc
}
