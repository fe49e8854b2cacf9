package ctl

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/internal/natsconn"
	"github.com/apiops-worker/apiops-worker/messages"
)

// IO is what a subcommand reads and writes, and where it looks up environment
// variables (os.Getenv when Getenv is nil).
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

func (s IO) getenv(name string) string {
	if s.Getenv == nil {
		return os.Getenv(name)
	}
	return s.Getenv(name)
}

// OpenInput opens FILE, or returns stdin for "-".
func OpenInput(name string, stdin io.Reader) (io.Reader, func(), error) {
	if name == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// connFlags are the flags every subcommand that talks to NATS has.
type connFlags struct {
	url, creds, user, ca, prefix, inboxPrefix string
	password                                  string // from NATS_PASSWORD only, never a flag
}

const connUsage = `
connection (flags override the environment):
  --nats-url URL   NATS server(s), comma-separated (env NATS_URL; default nats://127.0.0.1:4222)
  --creds FILE     NATS credentials file (env NATS_CREDS)
  --user NAME      NATS user (env NATS_USER); the password comes from env NATS_PASSWORD only
  --tls-ca FILE    CA certificate(s) to verify the server with (env NATS_CA)
  --prefix PREFIX  subject prefix the worker uses (env APIOPS_PREFIX; default apiops)
  --inbox-prefix P where this user receives JetStream's answers, for a user whose
                   NATS permissions let it subscribe under one prefix only, e.g.
                   _INBOX.TeamA; results come to _INBOX.<project>. whatever it is
                   (env NATS_INBOX_PREFIX; default _INBOX)
`

func (f *connFlags) register(fs *flag.FlagSet, env IO) {
	def := func(name, fallback string) string {
		if v := env.getenv(name); v != "" {
			return v
		}
		return fallback
	}
	fs.StringVar(&f.url, "nats-url", def("NATS_URL", nats.DefaultURL), "")
	fs.StringVar(&f.creds, "creds", def("NATS_CREDS", ""), "")
	fs.StringVar(&f.user, "user", def("NATS_USER", ""), "")
	fs.StringVar(&f.ca, "tls-ca", def("NATS_CA", ""), "")
	fs.StringVar(&f.prefix, "prefix", def("APIOPS_PREFIX", messages.DefaultPrefix), "")
	fs.StringVar(&f.inboxPrefix, "inbox-prefix", def("NATS_INBOX_PREFIX", ""), "")
	f.password = env.getenv("NATS_PASSWORD")
}

// check reports a flag combination that cannot work, before connecting.
func (f *connFlags) check() error {
	if problem := messages.CheckPrefix(f.prefix); problem != "" {
		return fmt.Errorf("--prefix %q %s", f.prefix, problem)
	}
	if f.inboxPrefix != "" {
		if problem := messages.CheckPrefix(f.inboxPrefix); problem != "" {
			return fmt.Errorf("--inbox-prefix (NATS_INBOX_PREFIX) %q %s", f.inboxPrefix, problem)
		}
	}
	if f.creds != "" && f.user != "" {
		return errors.New("give either --creds (NATS_CREDS) or --user (NATS_USER), not both")
	}
	if f.password != "" && f.user == "" {
		return errors.New("NATS_PASSWORD is set but no user: set --user or NATS_USER")
	}
	return nil
}

// connect checks the flags (see check) and connects to NATS. The error names the
// server(s) without any password.
func (f *connFlags) connect() (*nats.Conn, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	auth := natsconn.Auth{Creds: f.creds, User: f.user, Password: f.password, CA: f.ca, InboxPrefix: f.inboxPrefix}
	nc, err := nats.Connect(f.url, append(auth.Options(), nats.Name("apiopsctl"))...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", natsconn.Redact(f.url), err)
	}
	return nc, nil
}

// parseArgs parses flags that may come before or after the positional arguments;
// everything after "--" is positional. The flag set reports its own errors.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// newFlagSet returns a flag set that prints usage to stderr and reports errors itself.
func newFlagSet(name, usage string, env IO) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() { fmt.Fprint(env.Stderr, usage) }
	return fs
}

// flagFailure is the exit status after parseArgs failed: 0 for -h, else 1 (the flag
// set has printed the problem and the usage).
func flagFailure(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 1
}

// fail prints one message naming the subcommand and returns exit status 1.
func fail(env IO, name string, err error) int {
	fmt.Fprintf(env.Stderr, "apiopsctl %s: %v\n", name, err)
	return 1
}

// publisher connects and returns a client that publishes with the subject prefix and,
// when sealOpt is not nil, seals secrets, saying on stderr for which key. The caller
// closes the connection.
func (f *connFlags) publisher(sealOpt client.Option, env IO) (*client.Client, *nats.Conn, error) {
	nc, err := f.connect()
	if err != nil {
		return nil, nil, err
	}
	opts := []client.Option{client.WithPrefix(f.prefix)}
	if sealOpt != nil {
		opts = append(opts, sealOpt)
	}
	c, err := client.New(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if key := c.SealKey(); key != "" {
		fmt.Fprintf(env.Stderr, "sealing secrets for %s\n", key)
	}
	return c, nc, nil
}
