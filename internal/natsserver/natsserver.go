// Package natsserver runs a NATS server with JetStream inside the process: the worker's
// embedded default, and the real server that tests run against.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options for Start.
type Options struct {
	// Host and Port to listen on; Port -1 picks a free port (0 is NATS's default, 4222).
	Host string
	Port int
	// StoreDir keeps JetStream's data.
	StoreDir string
	// SyncAlways makes JetStream fsync every write before acknowledging it, so that an
	// acknowledged command survives a power cut. It costs throughput; tests that do
	// not need it leave it off.
	SyncAlways bool
}

// Start starts a server and waits until it accepts connections. Stop it with
// Shutdown and WaitForShutdown.
func Start(opts Options) (*server.Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("embedded NATS: a data directory is required")
	}
	if opts.Port > 0 {
		// The server only logs a port it cannot bind, and would then never be ready:
		// say so at once.
		addr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: cannot listen on %s: %w (another process has it? choose another address, or port 0 for a free one)", addr, err)
		}
		_ = ln.Close()
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "apiops-worker-embedded",
		Host:       opts.Host,
		Port:       opts.Port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		SyncAlways: opts.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded NATS: not ready to accept connections on %s:%d", opts.Host, opts.Port)
	}
	return srv, nil
}
