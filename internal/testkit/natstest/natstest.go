// Package natstest starts a real NATS server with JetStream for tests.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/apiops-worker/apiops-worker/internal/natsserver"
)

// Server is a running test server.
type Server struct {
	*server.Server
	StoreDir string
}

// Start starts a server on a free loopback port with its data in a temporary
// directory; it is shut down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartIn(t, t.TempDir())
}

// StartIn starts a server keeping its data in dir, so that a test can stop it and
// start it again on the same data.
func StartIn(t testing.TB, dir string) *Server {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Options{Host: "127.0.0.1", Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return &Server{Server: srv, StoreDir: dir}
}

// Connect returns a connection to the server, closed when the test ends.
func (s *Server) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
