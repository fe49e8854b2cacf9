package natstest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Cluster is a JetStream cluster of in-process servers routed to each other on
// loopback, each with its own name, ports and store directory. A node can be stopped
// and started again on the same ports and data.
type Cluster struct {
	t       testing.TB
	opts    []*server.Options
	servers []*server.Server
}

// StartCluster starts n servers and waits until JetStream answers. base, if not nil,
// gives each node's options (e.g. parsed from a configuration file); its listen and
// cluster addresses, routes, server name and store directory are replaced. The
// cluster stops when the test ends.
func StartCluster(t testing.TB, n int, base func(node int) *server.Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: make([]*server.Options, n), servers: make([]*server.Server, n)}
	clientPorts, routePorts := freePorts(t, n), freePorts(t, n)
	for i := range n {
		o := &server.Options{}
		if base != nil {
			o = base(i)
		}
		o.ServerName = fmt.Sprintf("n%d", i)
		o.Host, o.Port = "127.0.0.1", clientPorts[i]
		o.HTTPHost, o.HTTPPort = "", 0
		o.JetStream, o.StoreDir = true, t.TempDir()
		if o.Cluster.Name == "" {
			o.Cluster.Name = "test"
		}
		o.Cluster.Host, o.Cluster.Port = "127.0.0.1", routePorts[i]
		o.Routes = nil
		for j := range n {
			if j != i {
				o.Routes = append(o.Routes, server.RoutesFromStr(fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[j]))...)
			}
		}
		o.NoLog, o.NoSigs = true, true
		c.opts[i] = o
	}
	for i := range n {
		c.Start(i)
	}
	t.Cleanup(func() {
		for i := range c.servers {
			c.Stop(i)
		}
	})
	return c
}

// Start starts node i (again) on its ports and data.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	o := c.opts[i].Clone()
	srv, err := server.NewServer(o)
	if err != nil {
		c.t.Fatalf("node %d: %v", i, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("node %d not ready", i)
	}
	c.servers[i] = srv
}

// Stop shuts node i down, if it runs.
func (c *Cluster) Stop(i int) {
	if srv := c.servers[i]; srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		c.servers[i] = nil
	}
}

// Server is node i, or nil while it is stopped.
func (c *Cluster) Server(i int) *server.Server { return c.servers[i] }

// URLs is every node's client URL, comma-separated, as nats.Connect takes them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.opts))
	for i := range c.opts {
		urls[i] = c.ClientURL(i)
	}
	return strings.Join(urls, ",")
}

// ClientURL is node i's client URL, whether or not it runs.
func (c *Cluster) ClientURL(i int) string {
	return fmt.Sprintf("nats://%s:%d", c.opts[i].Host, c.opts[i].Port)
}

// Addr is node i's client address, host:port.
func (c *Cluster) Addr(i int) string {
	return fmt.Sprintf("%s:%d", c.opts[i].Host, c.opts[i].Port)
}

// WaitForJetStream waits until a JetStream request through nc gets an answer: the
// cluster has elected its meta leader.
func (c *Cluster) WaitForJetStream(nc *nats.Conn) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		msg, err := nc.Request("$JS.API.INFO", nil, time.Second)
		if err == nil && !strings.Contains(string(msg.Data), `"error"`) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("JetStream did not answer within 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling: the server has no event for this
	}
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		defer ln.Close()
	}
	return ports
}
