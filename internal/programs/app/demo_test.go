package app

import (
	"context"
	"strings"
	"testing"
	"time"
)

// demo is `apiops-worker --demo` running in-process: embedded NATS with JetStream and
// the APIOps simulator.
type demo struct {
	natsURL, httpAddr string
	logs              *lockedBuffer
	stop              func() (exitCode int) // cancels Run and waits for it
}

// startDemo runs the program with --demo and the given environment, and returns once
// the worker has started; the test's cleanup stops it and expects exit code 0.
func startDemo(t *testing.T, env map[string]string) *demo {
	t.Helper()
	d := &demo{logs: &lockedBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() {
		exit <- Run(ctx, []string{"--demo", "--listen", "127.0.0.1:-1",
			"--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, envFrom(env), d.logs)
	}()
	stopped, code := false, 0
	d.stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			select {
			case code = <-exit:
			case <-time.After(30 * time.Second):
				t.Fatal("no exit 30s after cancel")
			}
		}
		return code
	}
	t.Cleanup(func() {
		if code := d.stop(); code != 0 {
			t.Errorf("exit %d", code)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); d.natsURL == "" || d.httpAddr == ""; {
		started := false
		for _, l := range d.logs.lines() {
			started = started || l["msg"] == "worker started"
			if u, ok := l["url"].(string); ok && strings.HasPrefix(u, "nats://") {
				d.natsURL = u
			}
			if a, ok := l["addr"].(string); ok {
				d.httpAddr = a
			}
		}
		if !started {
			d.natsURL = ""
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not start; logs: %+v", d.logs.lines())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return d
}
