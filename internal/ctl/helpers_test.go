package ctl

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/internal/fakeworker"
	"github.com/apiops-worker/apiops-worker/internal/natstest"
)

// testEnv is a NATS server with the worker's streams and the environment that points
// apiopsctl at it.
type testEnv struct {
	url     string
	nc      *nats.Conn
	js      jetstream.JetStream
	results jetstream.Stream
	vars    map[string]string
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, results := fakeworker.CreateStreams(t, js, "")
	return &testEnv{url: srv.ClientURL(), nc: nc, js: js, results: results, vars: map[string]string{"NATS_URL": srv.ClientURL()}}
}

// output is what one apiopsctl run printed.
type output struct{ stdout, stderr bytes.Buffer }

func (e *testEnv) io(stdin string, out *output) IO {
	return IO{
		Stdin: strings.NewReader(stdin), Stdout: &out.stdout, Stderr: &out.stderr,
		Getenv: func(name string) string { return e.vars[name] },
	}
}

// testContext ends the test's waits that would otherwise hang on a failure.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func lines(s string) []string {
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}
