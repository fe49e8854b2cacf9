package app

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/worker"
)

// TestServiceAnnouncesMaxCommandSize: a worker announces its --max-command-size in its
// service metadata, the size its command stream holds commands to, so that publishers
// refuse a larger command themselves, naming the limit; without the flag, the
// default.
func TestServiceAnnouncesMaxCommandSize(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want int
	}{
		{map[string]string{"APIOPS_WORKER_MAX_COMMAND_SIZE": "65536"}, 65536},
		{nil, worker.DefaultMaxCommandSize},
	} {
		d := startDemo(t, tc.env)
		nc, err := nats.Connect(d.natsURL)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		size, announced, err := client.DiscoverMaxCommandSize(ctx, nc, "apiops")
		if size != tc.want || !announced || err != nil {
			t.Errorf("%v: discovered %d (announced %v, %v), want %d", tc.env, size, announced, err, tc.want)
		}
		js, _ := jetstream.New(nc)
		if s, err := js.Stream(ctx, worker.DefaultCommandStream); err != nil || s.CachedInfo().Config.MaxMsgSize != int32(tc.want) {
			t.Errorf("%v: the command stream's MaxMsgSize is not the size announced: %v", tc.env, err)
		}
		cancel()
		nc.Close()
		if code := d.stop(); code != 0 {
			t.Errorf("exit %d", code)
		}
	}
}
