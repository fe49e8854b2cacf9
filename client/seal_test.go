package client_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/internal/testkit/fakeworker"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

// workerKeys makes a worker key directory with one key.
func workerKeys(t *testing.T) (*seal.Keyring, string) {
	t.Helper()
	dir := t.TempDir()
	pub, err := seal.GenerateKeyFile(filepath.Join(dir, "k.xk"))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := seal.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ring, pub
}

// stored returns the n-th message of the command stream, opened with ring.
func stored(t *testing.T, e env, n uint64, ring *seal.Keyring) (*jetstream.RawStreamMsg, *messages.Command) {
	t.Helper()
	m, err := e.commands.GetMsg(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "the stored command", string(m.Data))
	cmd, err := messages.DecodeWith("MyProject", "keystore.create", m.Data, messages.DecodeOptions{Opener: ring, RequireSealed: true})
	if err != nil {
		t.Fatalf("the stored command: %v", err)
	}
	return m, cmd
}

func TestWithSealKey(t *testing.T) {
	e := setup(t)
	ring, pub := workerKeys(t)
	c, err := client.New(e.nc, client.WithSealKey(pub))
	if err != nil {
		t.Fatal(err)
	}
	if c.SealKey() != pub {
		t.Errorf("SealKey %q", c.SealKey())
	}
	cmd := keystoreCreate("seal-0001", "PKCS12")
	if _, err := c.Publish(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	_, got := stored(t, e, 1, ring)
	env := got.Params.(*messages.KeystoreCreate).KeyStoreEnvironmentList[0]
	if env.Password.Reveal() != password || env.File.Reveal() != file {
		t.Error("the stored command does not open to the secrets published")
	}
	if s, ok := env.Password.Sealed(); !ok || s.For != pub {
		t.Errorf("password sealed for %q", s.For)
	}
	// The caller's command is not changed.
	mine := cmd.Params.(*messages.KeystoreCreate).KeyStoreEnvironmentList[0]
	if _, sealed := mine.Password.Sealed(); sealed || mine.Password.Reveal() != password || mine.File.Reveal() != file {
		t.Error("Publish sealed the caller's command")
	}

	// A command with a secret already sealed is published as it is.
	already := keystoreCreate("seal-0002", "JKS")
	sealed, err := seal.Seal(pub, messages.SealedContent{Project: "MyProject", Field: "password", Value: password})
	if err != nil {
		t.Fatal(err)
	}
	already.Params.(*messages.KeystoreCreate).KeyStoreEnvironmentList[0].Password = messages.NewSealedSecret(sealed)
	if _, err := c.Publish(context.Background(), already); err != nil {
		t.Fatal(err)
	}
	_, got = stored(t, e, 2, ring)
	if s, _ := got.Params.(*messages.KeystoreCreate).KeyStoreEnvironmentList[0].Password.Sealed(); s != sealed {
		t.Error("an already sealed password was sealed again")
	}

	// Request and Submit seal too, and a worker that only checks form accepts them.
	w := fakeworker.Start(t, e.nc, fakeworker.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Request(ctx, keystoreCreate("seal-0003", "JKS"))
	if err != nil || r.Status != messages.StatusSucceeded {
		t.Fatalf("Request: %+v, %v", r, err)
	}
	if err := c.Submit(ctx, []*messages.Command{keystoreCreate("seal-0004", "JKS"), truststoreSet("seal-0005", "u")}, nil); err != nil {
		t.Fatal(err)
	}
	opened := map[string]bool{}
	for _, m := range w.Received() {
		noSecret(t, "a command received", string(m.Data))
		if strings.HasSuffix(m.Subject, ".keystore.create") {
			cmd, err := messages.DecodeWith("MyProject", "keystore.create", m.Data, messages.DecodeOptions{Opener: ring, RequireSealed: true})
			if err != nil {
				t.Errorf("received: %v", err)
			}
			opened[cmd.ID] = true
		}
	}
	if !opened["seal-0003"] || !opened["seal-0004"] {
		t.Errorf("opened %v, want seal-0003 and seal-0004 among them", opened)
	}
}

func TestSealKeyOptionErrors(t *testing.T) {
	nc := natstest.Start(t).Connect(t)
	_, pub := workerKeys(t)
	for _, tc := range []struct {
		opts []client.Option
		want string
	}{
		{[]client.Option{client.WithSealKey("XNOTAKEY")}, `seal key: "XNOTAKEY" is not a public curve key`},
		{[]client.Option{client.WithSealKey("SXSEEDLIKE")}, "starting with S (a seed?)"},
		{[]client.Option{client.WithSealKey(pub), client.WithDiscoveredSealKey()}, "not both"},
		{[]client.Option{client.WithDiscoveredSealKey()}, "no apiops-worker instance answered"},
	} {
		if _, err := client.New(nc, tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want an error saying %q", err, tc.want)
		}
	}
}

func TestWithDiscoveredSealKey(t *testing.T) {
	nc := natstest.Start(t).Connect(t)
	_, a := workerKeys(t)
	_, b := workerKeys(t)
	_, other := workerKeys(t)

	// No instance of this prefix announces a key.
	keyless := fakeworker.Announce(t, nc, "", "")
	fakeworker.Announce(t, nc, "elsewhere", other)
	if _, err := client.New(nc, client.WithDiscoveredSealKey()); err == nil || !strings.Contains(err.Error(), "none of the 1 apiops-worker instances announces a seal key") {
		t.Errorf("none announces: %v", err)
	}
	if _, err := client.New(nc, client.WithPrefix("nowhere"), client.WithDiscoveredSealKey()); err == nil || !strings.Contains(err.Error(), `no apiops-worker instance with prefix "nowhere" answered`) {
		t.Errorf("another prefix: %v", err)
	}
	// One instance has keys, one none: sealing is not safe yet.
	first := fakeworker.Announce(t, nc, "", a)
	if _, err := client.New(nc, client.WithDiscoveredSealKey()); err == nil || !strings.Contains(err.Error(), "hold no seal key") {
		t.Errorf("one without keys: %v", err)
	}
	_ = keyless.Stop()

	// Mid-rotation: one instance has the new key b as well, the other not yet: a.
	fakeworker.Announce(t, nc, "", b, a)
	c, err := client.New(nc, client.WithDiscoveredSealKey())
	if err != nil || c.SealKey() != a {
		t.Fatalf("mid-rotation: %v, key %q, want the old key %s that every instance holds", err, c.SealKey(), a)
	}
	// Every instance holds b: b.
	fakeworker.Announce(t, nc, "", b, a)
	_ = first.Stop()
	key, instances, err := client.DiscoverSealKey(context.Background(), nc, messages.DefaultPrefix)
	if err != nil || key != b || len(instances) != 2 {
		t.Errorf("after the rotation: %q, %d instances, %v; want %s", key, len(instances), err, b)
	}
	// An instance with an unrelated key: none in common.
	fakeworker.Announce(t, nc, "", other)
	if _, _, err := client.DiscoverSealKey(context.Background(), nc, messages.DefaultPrefix); err == nil || !strings.Contains(err.Error(), "no seal key in common") {
		t.Errorf("no key in common: %v", err)
	}
	// The other prefix's instance is its own.
	key, instances, err = client.DiscoverSealKey(context.Background(), nc, "elsewhere")
	if err != nil || key != other || len(instances) != 1 {
		t.Errorf("elsewhere: %q, %v, %v", key, instances, err)
	}
}
