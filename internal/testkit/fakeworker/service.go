package fakeworker

import (
	"maps"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Announce registers a stand-in worker instance for NATS service discovery, as the
// worker registers itself: service "apiops-worker" with a status endpoint
// <prefix>.worker.status ("" for messages.DefaultPrefix), and with sealKey (unless "")
// in its metadata as "seal_key", and older keys with it as "seal_keys". It answers once
// Announce returns, and is stopped when the test ends.
func Announce(t testing.TB, nc *nats.Conn, prefix, sealKey string, older ...string) micro.Service {
	t.Helper()
	metadata := map[string]string{}
	if sealKey != "" {
		metadata["seal_key"], metadata["seal_keys"] = sealKey, strings.Join(append(older, sealKey), ",")
	}
	return AnnounceMetadata(t, nc, prefix, metadata)
}

// AnnounceMetadata is Announce with metadata as the instance's service metadata
// (besides "fleet"), e.g. "max_command_size".
func AnnounceMetadata(t testing.TB, nc *nats.Conn, prefix string, metadata map[string]string) micro.Service {
	t.Helper()
	if prefix == "" {
		prefix = messages.DefaultPrefix
	}
	metadata = maps.Clone(metadata)
	if metadata == nil {
		metadata = map[string]string{}
	}
	metadata["fleet"] = "lease"
	svc, err := micro.AddService(nc, micro.Config{Name: "apiops-worker", Version: "0.0.0-fake", Metadata: metadata})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	err = svc.AddEndpoint("status", micro.HandlerFunc(func(req micro.Request) { _ = req.Respond([]byte(`{"ready":"yes"}`)) }),
		micro.WithEndpointSubject(prefix+".worker.status"))
	if err != nil {
		t.Fatal(err)
	}
	// The server has the service's subscriptions before a request from another
	// connection can look for them.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return svc
}
