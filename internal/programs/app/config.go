// Package app is the apiops-worker program: settings from flags and environment,
// the embedded NATS server, the demo simulator, logging and signals around package
// worker.
package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/expiry"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// DefaultInboxPrefix is the worker's inbox prefix unless configured otherwise. It lies
// outside _INBOX., where teams get _INBOX.<project>, so that no project name reaches
// it, and where the shipped permissions let the worker publish replies.
const DefaultInboxPrefix = "_APIOPS_WORKER_INBOX"

// settings is everything the program can be told.
type settings struct {
	natsURL, natsCreds, natsUser, natsPassword string
	natsCA, natsCert, natsKey                  string
	natsInboxPrefix                            string
	listen, dataDir                            string

	apiopsURL, apiopsTokenFile, apiopsToken string
	apiopsCA, apiopsCert, apiopsKey         string
	apiopsTimeout                           time.Duration

	// OAuth2 client credentials, instead of a token: the secret from
	// APIOPS_CLIENT_SECRET_FILE (read at each token request) or APIOPS_CLIENT_SECRET.
	apiopsClientID, apiopsTokenURL             string
	apiopsClientSecretFile, apiopsClientSecret string

	demo        bool
	demoSeed    string
	demoDialect simulator.Dialect

	logFormat, logLevel string
	httpAddr            string
	pprof               bool
	sealKeys            string
	tracing             *tracingSettings // nil: off

	// The expiry watch (package expiry): projects whose certificates and keystores
	// the active instance reads at watchInterval; keystore passwords from files in
	// watchPasswords.
	watchProjects  []string
	watchInterval  time.Duration
	watchPasswords string

	worker worker.Config
}

// envName is the environment variable that can set a flag: NATS_* and APIOPS_* flags
// keep their name, the others get APIOPS_WORKER_, e.g. --max-attempts is
// APIOPS_WORKER_MAX_ATTEMPTS.
func envName(flagName string) string {
	name := strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
	if strings.HasPrefix(name, "NATS_") || strings.HasPrefix(name, "APIOPS_") {
		return name
	}
	return "APIOPS_WORKER_" + name
}

// parseSettings reads flags, falling back to the environment, then checks them. Each
// error names the flag and its variable.
// errShowVersion is parseSettings' answer to --version.
var errShowVersion = errors.New("--version")

func parseSettings(args []string, getenv func(string) string, stderr io.Writer) (*settings, error) {
	s := &settings{}
	w := &s.worker
	fs := flag.NewFlagSet("apiops-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.natsURL, "nats-url", "", "NATS server URL; empty starts an embedded server with JetStream")
	fs.StringVar(&s.natsCreds, "nats-creds", "", "NATS credentials file (JWT and nkey)")
	fs.StringVar(&s.natsUser, "nats-user", "", "NATS user; the password comes from NATS_PASSWORD")
	fs.StringVar(&s.natsCA, "nats-ca", "", "CA certificates (PEM) for the NATS server's certificate")
	fs.StringVar(&s.natsCert, "nats-cert", "", "client certificate (PEM) for NATS")
	fs.StringVar(&s.natsKey, "nats-key", "", "client key (PEM) for NATS")
	fs.StringVar(&s.natsInboxPrefix, "nats-inbox-prefix", DefaultInboxPrefix, "where the worker receives its pulled commands and JetStream answers; give no publisher permission to subscribe under it")
	fs.StringVar(&s.listen, "listen", "127.0.0.1:4222", "address of the embedded NATS server; port 0 takes a free one (logged)")
	fs.StringVar(&s.dataDir, "data-dir", "data", "directory of the embedded NATS server's JetStream data")
	fs.StringVar(&s.apiopsURL, "apiops-url", "", "APIOps base URL, e.g. https://apinizer.example.com")
	fs.StringVar(&s.apiopsTokenFile, "apiops-token-file", "", "file holding the APIOps token, re-read when APIOps answers 401 (or set APIOPS_TOKEN)")
	fs.StringVar(&s.apiopsClientID, "apiops-client-id", "", "APIOps user for OAuth2 client credentials, instead of a token; the password comes from APIOPS_CLIENT_SECRET_FILE (re-read at each token request) or APIOPS_CLIENT_SECRET")
	fs.StringVar(&s.apiopsTokenURL, "apiops-token-url", "", "APIOps token endpoint, with --apiops-client-id (default <apiops-url>/apiops/auth/token)")
	fs.StringVar(&s.apiopsCA, "apiops-ca-file", "", "CA certificates (PEM) for APIOps's certificate")
	fs.StringVar(&s.apiopsCert, "apiops-client-cert", "", "client certificate (PEM) for APIOps behind mTLS")
	fs.StringVar(&s.apiopsKey, "apiops-client-key", "", "client key (PEM) for APIOps behind mTLS")
	fs.DurationVar(&s.apiopsTimeout, "apiops-timeout", 30*time.Second, "timeout of one APIOps request")
	showVersion := fs.Bool("version", false, "print the version and the commit this binary was built from, and exit")
	fs.BoolVar(&s.demo, "demo", false, "also run the built-in APIOps simulator and use it")
	fs.StringVar(&s.demoSeed, "demo-seed", "", "the simulator's seed file, with --demo (default: the built-in one, also at testdata/apiops-seed.json)")
	demoDialect := fs.String("demo-dialect", string(simulator.DialectMixed), "how the simulator answers, with --demo: "+simulator.DialectNames()+
		" (docs/design/apiops-dialects.md)")
	fs.StringVar(&s.logFormat, "log-format", "json", "json, or console for people")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&s.httpAddr, "http-addr", ":9090", "address of /metrics, /healthz and /readyz; empty switches them off")
	fs.BoolVar(&s.pprof, "pprof", false, "also serve Go's profiles under /debug/pprof/ on --http-addr (for profiling; off in production)")
	fs.StringVar(&w.CommandStream, "command-stream", worker.DefaultCommandStream, "stream of the commands")
	fs.StringVar(&w.ResultStream, "result-stream", worker.DefaultResultStream, "stream of the results")
	fs.StringVar(&w.DeadStream, "dead-stream", worker.DefaultDeadStream, "stream of the dead letters")
	fs.StringVar(&w.IdempotencyBucket, "idempotency-bucket", worker.DefaultIdempotencyBucket, "key-value bucket of finished ids")
	fs.DurationVar(&w.ResultMaxAge, "result-max-age", worker.DefaultResultMaxAge, "how long results are kept")
	fs.DurationVar(&w.DeadMaxAge, "dead-max-age", worker.DefaultDeadMaxAge, "how long dead letters are kept")
	fs.Int64Var(&w.StreamMaxBytes, "stream-max-bytes", worker.DefaultStreamMaxBytes, "the most bytes each stream and the bucket may hold on disk")
	maxCommandSize := fs.Int("max-command-size", worker.DefaultMaxCommandSize, "the largest command in bytes; keep it well under the server's max_payload, so that its dead letter fits")
	fs.StringVar(&w.Prefix, "prefix", messages.DefaultPrefix, "first token(s) of every subject")
	fs.IntVar(&w.Concurrency, "concurrency", worker.DefaultConcurrency, "APIOps requests at once; four times as many commands are held")
	fs.IntVar(&w.MaxAttempts, "max-attempts", worker.DefaultMaxAttempts, "transient failures a command may have, across redeliveries")
	fs.DurationVar(&w.RetryInitial, "retry-initial", worker.DefaultRetryInitial, "first backoff wait")
	fs.DurationVar(&w.RetryMax, "retry-max", worker.DefaultRetryMax, "longest backoff wait; probes while paused use it")
	fs.IntVar(&w.OutageThreshold, "outage-threshold", worker.DefaultOutageThreshold, "transient failures in a row, across commands, that pause the worker")
	fs.DurationVar(&w.ShutdownTimeout, "shutdown-timeout", worker.DefaultShutdownTimeout, "time commands in flight get to finish at shutdown")
	fs.DurationVar(&w.IdempotencyWindow, "idempotency-window", worker.DefaultIdempotencyWindow, "how long a finished command id is remembered")
	fs.DurationVar(&w.AckWait, "ack-wait", worker.DefaultAckWait, "how long JetStream waits for an ack before redelivering (a crashed worker's commands come back after it)")
	fs.DurationVar(&w.LeaseTimeout, "lease-timeout", worker.DefaultLeaseTimeout, "how long standbys wait for the active instance's lease renewal before one takes over")
	fs.IntVar(&w.Replicas, "replicas", 1, "replicas of the streams and the bucket")
	fs.StringVar(&s.sealKeys, "seal-keys", "", "directory of the curve key seeds that open sealed secrets, one per file (apiopsctl seal keygen); the file whose name sorts last is the current key")
	fs.BoolVar(&w.RequireSealed, "require-sealed", false, "reject commands whose passwords or keystore files are not sealed (needs --seal-keys)")
	watchProjects := fs.String("watch-projects", "", "projects, comma-separated, whose certificates and keystores' files the active instance reads for their expiry (docs/operating.md, Expiry watch); default none")
	fs.DurationVar(&s.watchInterval, "watch-interval", expiry.DefaultInterval, "how often the expiry watch reads, ±10%; the first read is at start")
	fs.StringVar(&s.watchPasswords, "watch-keystore-passwords", "", "directory of the keystores' passwords for the expiry watch, one file <project>.<keystore> each, plaintext or sealed (e.g. a mounted Secret); never the passwords themselves")
	fs.BoolVar(&w.ManageStreams, "manage-streams", true, "create or update the streams, bucket and consumer at start; false when an operator manages them")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: apiops-worker [flags]\n\nEvery flag can also be set by an environment variable: --nats-* and --apiops-* flags\nby their name in capitals (NATS_URL, APIOPS_TOKEN_FILE), the others with APIOPS_WORKER_\n(APIOPS_WORKER_CONCURRENCY). Flags win. The APIOps token comes from APIOPS_TOKEN_FILE or\nAPIOPS_TOKEN, or is fetched with --apiops-client-id and its secret from\nAPIOPS_CLIENT_SECRET_FILE or APIOPS_CLIENT_SECRET; the NATS password comes from\nNATS_PASSWORD; secrets never from a flag.\n\n")
		fs.PrintDefaults()
	}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", envName(f.Name), v, err))
			}
		}
	})
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *showVersion {
		return nil, errShowVersion
	}
	if *maxCommandSize < 0 || *maxCommandSize > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("--max-command-size (APIOPS_WORKER_MAX_COMMAND_SIZE) %d is out of range", *maxCommandSize))
	}
	w.MaxCommandSize = int32(min(max(*maxCommandSize, 0), math.MaxInt32))
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	var err error
	if s.demoDialect, err = simulator.ParseDialect(*demoDialect); err != nil {
		errs = append(errs, fmt.Errorf("--demo-dialect (APIOPS_WORKER_DEMO_DIALECT): %w", err))
	}
	s.apiopsToken = strings.TrimSpace(getenv("APIOPS_TOKEN"))
	s.apiopsClientSecretFile, s.apiopsClientSecret = getenv("APIOPS_CLIENT_SECRET_FILE"), getenv("APIOPS_CLIENT_SECRET")
	s.natsPassword = getenv("NATS_PASSWORD")
	w.ManageStreams = w.ManageStreams || s.natsURL == "" // nobody else manages an embedded server

	switch {
	case s.demo:
	case s.apiopsURL == "":
		errs = append(errs, errors.New("--apiops-url (APIOPS_URL) is required, or use --demo"))
	case s.apiopsTokenFile == "" && s.apiopsToken == "" && s.apiopsClientID == "":
		errs = append(errs, errors.New("the APIOps token or client credentials are missing: set --apiops-token-file (APIOPS_TOKEN_FILE) or APIOPS_TOKEN, or --apiops-client-id (APIOPS_CLIENT_ID) with APIOPS_CLIENT_SECRET_FILE or APIOPS_CLIENT_SECRET"))
	}
	errs = append(errs, checkClientCredentials(s)...)
	if s.apiopsTokenFile != "" {
		if _, err := os.Stat(s.apiopsTokenFile); err != nil {
			errs = append(errs, fmt.Errorf("--apiops-token-file (APIOPS_TOKEN_FILE): %w", err))
		}
	}
	if (s.apiopsCert == "") != (s.apiopsKey == "") {
		errs = append(errs, errors.New("--apiops-client-cert and --apiops-client-key go together"))
	}
	if (s.natsCert == "") != (s.natsKey == "") {
		errs = append(errs, errors.New("--nats-cert and --nats-key go together"))
	}
	if s.natsUser != "" && s.natsPassword == "" {
		errs = append(errs, errors.New("--nats-user (NATS_USER) needs NATS_PASSWORD"))
	}
	if problem := messages.CheckPrefix(s.natsInboxPrefix); problem != "" {
		errs = append(errs, fmt.Errorf("--nats-inbox-prefix (NATS_INBOX_PREFIX) %q %s", s.natsInboxPrefix, problem))
	}
	if w.RequireSealed && s.sealKeys == "" {
		errs = append(errs, errors.New("--require-sealed (APIOPS_WORKER_REQUIRE_SEALED) needs --seal-keys (APIOPS_WORKER_SEAL_KEYS): without keys no command with a secret could run"))
	}
	if s.logFormat != "json" && s.logFormat != "console" {
		errs = append(errs, fmt.Errorf("--log-format (APIOPS_WORKER_LOG_FORMAT) must be json or console, not %q", s.logFormat))
	}
	if s.apiopsTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--apiops-timeout (APIOPS_TIMEOUT) must be positive, not %v", s.apiopsTimeout))
	}
	if s.tracing, err = tracingFromEnv(getenv); err != nil {
		errs = append(errs, err)
	}
	s.watchProjects, err = parseWatchSettings(*watchProjects, s)
	errs = append(errs, err)
	return s, errors.Join(errs...)
}

// checkClientCredentials checks the client credentials settings and fills in the
// default token URL.
func checkClientCredentials(s *settings) []error {
	var errs []error
	hasSecret := s.apiopsClientSecretFile != "" || s.apiopsClientSecret != ""
	switch {
	case s.apiopsClientID != "" && !hasSecret:
		errs = append(errs, errors.New("--apiops-client-id (APIOPS_CLIENT_ID) needs its secret: set APIOPS_CLIENT_SECRET_FILE or APIOPS_CLIENT_SECRET"))
	case s.apiopsClientID == "" && s.apiopsClientSecretFile != "":
		errs = append(errs, errors.New("APIOPS_CLIENT_SECRET_FILE is set without --apiops-client-id (APIOPS_CLIENT_ID)"))
	case s.apiopsClientID == "" && s.apiopsClientSecret != "":
		errs = append(errs, errors.New("APIOPS_CLIENT_SECRET is set without --apiops-client-id (APIOPS_CLIENT_ID)"))
	}
	if s.apiopsClientID != "" && (s.apiopsTokenFile != "" || s.apiopsToken != "") {
		errs = append(errs, errors.New("--apiops-client-id (APIOPS_CLIENT_ID) and a token (--apiops-token-file (APIOPS_TOKEN_FILE) or APIOPS_TOKEN) are both set: choose one"))
	}
	if s.apiopsClientSecretFile != "" {
		if _, err := apiops.SecretFile(s.apiopsClientSecretFile)(); err != nil {
			errs = append(errs, fmt.Errorf("APIOPS_CLIENT_SECRET_FILE: %w", err))
		}
	}
	switch {
	case s.apiopsTokenURL != "" && s.apiopsClientID == "":
		errs = append(errs, errors.New("--apiops-token-url (APIOPS_TOKEN_URL) is only used with --apiops-client-id (APIOPS_CLIENT_ID)"))
	case s.apiopsTokenURL != "":
		if u, err := url.Parse(s.apiopsTokenURL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			errs = append(errs, errors.New("--apiops-token-url (APIOPS_TOKEN_URL) must be an http:// or https:// URL with a host"))
		}
	case s.apiopsClientID != "" && s.apiopsURL != "": // the default: the APIOps URL's path kept
		if u, err := url.Parse(s.apiopsURL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			errs = append(errs, errors.New("--apiops-url (APIOPS_URL) must be an http:// or https:// URL with a host"))
		} else {
			u.RawQuery, u.Fragment = "", ""
			s.apiopsTokenURL = u.JoinPath("apiops", "auth", "token").String()
		}
	}
	return errs
}

// parseWatchSettings reads --watch-projects and checks the other expiry watch
// settings against it.
func parseWatchSettings(list string, s *settings) ([]string, error) {
	var projects []string
	var errs []error
	for p := range strings.SplitSeq(list, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
		case messages.CheckProject(p) != "":
			errs = append(errs, fmt.Errorf("--watch-projects (APIOPS_WORKER_WATCH_PROJECTS): project %q %s", p, messages.CheckProject(p)))
		case !slices.Contains(projects, p):
			projects = append(projects, p)
		}
	}
	if s.watchInterval <= 0 {
		errs = append(errs, fmt.Errorf("--watch-interval (APIOPS_WORKER_WATCH_INTERVAL) must be positive, not %v", s.watchInterval))
	}
	if s.watchPasswords != "" {
		if len(projects) == 0 && list == "" {
			errs = append(errs, errors.New("--watch-keystore-passwords (APIOPS_WORKER_WATCH_KEYSTORE_PASSWORDS) is only used with --watch-projects (APIOPS_WORKER_WATCH_PROJECTS)"))
		} else if st, err := os.Stat(s.watchPasswords); err != nil {
			errs = append(errs, fmt.Errorf("--watch-keystore-passwords (APIOPS_WORKER_WATCH_KEYSTORE_PASSWORDS): %w", err))
		} else if !st.IsDir() {
			errs = append(errs, fmt.Errorf("--watch-keystore-passwords (APIOPS_WORKER_WATCH_KEYSTORE_PASSWORDS) %s is not a directory", s.watchPasswords))
		}
	}
	return projects, errors.Join(errs...)
}
