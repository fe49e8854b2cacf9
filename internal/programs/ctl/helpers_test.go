package ctl

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/internal/testkit/fakeworker"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
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

// TestEveryVerbChecksTheConnectionFlags: a verb that talks to NATS refuses flags that
// cannot work, naming them, before it tries to connect.
func TestEveryVerbChecksTheConnectionFlags(t *testing.T) {
	verbs := map[string]func(context.Context, []string, IO) int{"results": Results, "dlq": DLQ, "seal": Seal, "expiry": Expiry}
	args := map[string][]string{"results": {"--prefix", "a.*"}, "dlq": {"list", "--prefix", "a.*"}, "seal": {"pubkey", "--prefix", "a.*"}, "expiry": {"--prefix", "a.*"}}
	for name, verb := range verbs {
		var out output
		env := IO{Stdin: strings.NewReader(""), Stdout: &out.stdout, Stderr: &out.stderr,
			Getenv: func(k string) string { return map[string]string{"NATS_URL": "nats://127.0.0.1:1"}[k] }} // nothing listens there
		if code := verb(testContext(t), args[name], env); code != 1 || !strings.Contains(out.stderr.String(), `--prefix "a.*"`) {
			t.Errorf("%s with a bad prefix: exit %d, %s", name, code, out.stderr.String())
		}
	}
}
