package app

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/expiry"
	"github.com/apiops-worker/apiops-worker/internal/buildinfo"
	"github.com/apiops-worker/apiops-worker/internal/metrics"
	"github.com/apiops-worker/apiops-worker/internal/natsconn"
	"github.com/apiops-worker/apiops-worker/internal/natsserver"
	"github.com/apiops-worker/apiops-worker/seal"
	"github.com/apiops-worker/apiops-worker/worker"
)

// Run is the whole program; it returns the exit code: 0 after a clean shutdown, 2 for
// bad settings, 1 when something fails at run time.
func Run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	s, err := parseSettings(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errShowVersion) {
		fmt.Fprintln(os.Stdout, buildinfo.String("apiops-worker"))
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "apiops-worker: %v\n", err)
		return 2
	}
	log, err := newLogger(s.logFormat, s.logLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "apiops-worker: %v\n", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	if err := run(ctx, s, log); err != nil {
		log.Error("apiops-worker stopped", zap.Error(err))
		return 1
	}
	return 0
}

func run(ctx context.Context, s *settings, log *zap.Logger) error {
	natsURL := s.natsURL
	if natsURL == "" {
		host, portText, err := net.SplitHostPort(s.listen)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		port, err := strconv.Atoi(portText)
		if err != nil {
			return fmt.Errorf("--listen: port %q: %w", portText, err)
		}
		if port == 0 {
			port = -1 // a free port, as Go's listeners take 0; nats-server's is -1
		}
		srv, err := natsserver.Start(natsserver.Options{Host: host, Port: port, StoreDir: s.dataDir, SyncAlways: true})
		if err != nil {
			return err
		}
		defer func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		}()
		natsURL = srv.ClientURL()
		log.Info("embedded NATS server started", zap.String("url", natsURL), zap.String("data_dir", s.dataDir))
	}

	var tokens apiops.TokenSource = apiops.StaticToken(s.apiopsToken)
	apiURL := s.apiopsURL
	var sim *simulator.Server
	if s.demo {
		url, token, demoSim, stop, err := startSimulator(s.demoSeed, s.demoDialect)
		if err != nil {
			return err
		}
		defer stop()
		apiURL, tokens, sim = url, apiops.StaticToken(token), demoSim
		log.Info("demo: APIOps simulator started", zap.String("url", url), zap.String("seed", cmp.Or(s.demoSeed, "built in")), zap.String("dialect", string(s.demoDialect)))
	} else if s.apiopsTokenFile != "" {
		tokens = apiops.NewFileToken(s.apiopsTokenFile)
	}
	if s.worker.Instance == "" {
		s.worker.Instance = worker.InstanceName()
	}
	tp, err := startTracing(ctx, s.tracing, s.worker.Instance, log)
	if err != nil {
		return err
	}
	if tp != nil {
		s.worker.TracerProvider = tp
		defer stopTracing(tp, log) // after the worker stopped: its last spans go too
	}
	opts := []apiops.Option{apiops.WithTimeout(s.apiopsTimeout), apiops.WithMaxConnsPerHost(2 * s.worker.Concurrency),
		apiops.WithUserAgent("apiops-worker/" + buildinfo.Version + " (" + s.worker.Instance + ")")}
	if s.apiopsCA != "" {
		opts = append(opts, apiops.WithCAFile(s.apiopsCA))
	}
	if s.apiopsCert != "" {
		opts = append(opts, apiops.WithClientCertificate(s.apiopsCert, s.apiopsKey))
	}
	if s.apiopsClientID != "" && !s.demo {
		cc, err := clientCredentials(s, opts)
		if err != nil {
			return err
		}
		tokens = cc
		log.Info("APIOps tokens come from OAuth2 client credentials", zap.String("client_id", s.apiopsClientID), zap.String("token_url", redactURL(s.apiopsTokenURL)))
	}
	client, err := apiops.New(apiURL, tokens, opts...)
	if err != nil {
		return err
	}

	// A connection closed for good (the server closed it for a protocol error, or
	// reconnecting was given up) ends the run with an error, so that the process exits
	// and its orchestrator starts it afresh, rather than stay half alive.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	closed := make(chan struct{})
	nc, err := nats.Connect(natsURL, append(natsOptions(s, log), nats.ClosedHandler(func(*nats.Conn) {
		if runCtx.Err() == nil {
			close(closed)
			stopRun()
		}
	}))...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", natsconn.Redact(natsURL), err)
	}
	defer nc.Close()

	keys, err := loadSealKeys(s.sealKeys, log)
	if err != nil {
		return err
	}
	sealKeys := func() []string { return nil }
	if keys != nil {
		s.worker.Opener, s.worker.DigestKeys, sealKeys = keys, keys, keys.Publics
	}

	var w *worker.Worker
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, buildinfo.Version, buildinfo.Commit(), func(ctx context.Context) (worker.Backlog, error) { return w.Backlog(ctx) })
	s.worker.Logger, s.worker.Observer = log, m
	s.worker.OlderInstances = func(ctx context.Context) ([]string, error) { return olderInstances(ctx, nc) }
	if w, err = worker.New(nc, client, s.worker); err != nil {
		return err
	}
	if s.httpAddr != "" {
		stop, err := startHTTP(s.httpAddr, reg, w, s.pprof, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	svc := &service{nc: nc, prefix: s.worker.Prefix, ready: w, metrics: m, sealKeys: sealKeys,
		maxCommandSize: cmp.Or(s.worker.MaxCommandSize, worker.DefaultMaxCommandSize)} // as worker.New defaults it
	if err := svc.register(); err != nil {
		return err
	}
	defer svc.stop()
	if keys != nil {
		watchCtx, stopWatching := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() { defer close(watched); watchSealKeys(watchCtx, keys, svc, sealKeysReload, log) }()
		defer func() { stopWatching(); <-watched }()
	}
	if len(s.watchProjects) > 0 {
		watcher, err := newExpiryWatcher(s, nc, client, sim, keys, w, reg, log)
		if err != nil {
			return err
		}
		watchCtx, stopWatching := context.WithCancel(runCtx)
		watched := make(chan struct{})
		go func() { defer close(watched); watcher.Run(watchCtx) }()
		defer func() { stopWatching(); <-watched }()
	}
	if err := w.Run(runCtx); err != nil {
		return err
	}
	select {
	case <-closed:
		return fmt.Errorf("the NATS connection was closed (last error: %v): exiting, to be started afresh", nc.LastError())
	default:
	}
	if err := nc.Drain(); err != nil {
		log.Warn("draining the NATS connection", zap.Error(err))
	}
	return nil
}

func natsOptions(s *settings, log *zap.Logger) []nats.Option {
	opts := []nats.Option{
		nats.Name("apiops-worker"),
		// Start even while NATS is down: the worker sets up once it answers.
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// No acknowledgement or keep-alive sent after a reconnect from a buffer filled
		// while cut off: it could hold back commands another instance has taken over.
		nats.ReconnectBufSize(-1),
		// Notice a dead link well within the lease timeout.
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("connected to NATS", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it
				log.Warn("disconnected from NATS", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
		// nats.go's default handler writes to stderr past the logger.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			fields := []zap.Field{zap.Error(err)}
			if sub != nil {
				fields = append(fields, zap.String("subscription", sub.Subject))
			}
			log.Error("NATS reported an error", fields...)
		}),
	}
	auth := natsconn.Auth{Creds: s.natsCreds, User: s.natsUser, Password: s.natsPassword, CA: s.natsCA, Cert: s.natsCert, Key: s.natsKey,
		InboxPrefix: s.natsInboxPrefix}
	return append(opts, auth.Options()...)
}

// clientCredentials is the token source of --apiops-client-id. It takes the APIOps
// client's options, so that token requests have the same TLS settings and timeout.
func clientCredentials(s *settings, opts []apiops.Option) (*apiops.ClientCredentials, error) {
	secret := apiops.SecretValue(s.apiopsClientSecret)
	if s.apiopsClientSecretFile != "" {
		secret = apiops.SecretFile(s.apiopsClientSecretFile)
	}
	return apiops.NewClientCredentials(s.apiopsTokenURL, s.apiopsClientID, secret, opts...)
}

// redactURL hides a password in raw's user info, for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// startSimulator serves the APIOps simulator on a free loopback port. The server is
// returned for what the demo takes from it besides its URL: its keystores' passwords.
func startSimulator(seedPath string, dialect simulator.Dialect) (url, token string, sim *simulator.Server, stop func(), err error) {
	seed := simulator.DemoSeed()
	if seedPath != "" {
		if seed, err = simulator.LoadSeed(seedPath); err != nil {
			return "", "", nil, nil, fmt.Errorf("--demo-seed: %w", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, nil, fmt.Errorf("demo simulator: %w", err)
	}
	sim = simulator.New(seed)
	sim.SetDialect(dialect)
	sim.SetRecording(false)
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), seed.Token, sim, func() { _ = srv.Close() }, nil
}

func newLogger(format, level string, out io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level (APIOPS_WORKER_LOG_LEVEL): %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	enc := zapcore.NewJSONEncoder(encCfg)
	if format == "console" {
		encCfg = zap.NewDevelopmentEncoderConfig()
		encCfg.EncodeTime = zapcore.TimeEncoderOfLayout(time.TimeOnly)
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl)), nil
}

// newExpiryWatcher is the expiry watch of --watch-projects: it reads while w is the
// active instance, counts on reg and publishes each project's table to the expiry
// stream. Keystore passwords come from --watch-keystore-passwords, opened with the
// seal keys when sealed, or, in the demo, from the simulator.
func newExpiryWatcher(s *settings, nc *nats.Conn, client *apiops.Client, sim *simulator.Server, keys *seal.DirKeys,
	w *worker.Worker, reg prometheus.Registerer, log *zap.Logger) (*expiry.Watcher, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("expiry watch: %w", err)
	}
	var passwords expiry.Passwords
	switch {
	case s.watchPasswords != "":
		dir := expiry.DirPasswords{Dir: s.watchPasswords}
		if keys != nil { // a nil *DirKeys in the interface would not be nil
			dir.Opener = keys
		}
		passwords = dir
	case sim != nil:
		passwords = expiry.PasswordFunc(sim.KeystorePassword)
	}
	watcher, err := expiry.New(expiry.Config{
		Source:    client,
		Projects:  s.watchProjects,
		Interval:  s.watchInterval,
		Active:    w.Active,
		Passwords: passwords,
		Publisher: &expiry.StreamPublisher{JS: js, Prefix: s.worker.Prefix, Replicas: s.worker.Replicas, Manage: s.worker.ManageStreams},
		Metrics:   expiry.NewMetrics(reg),
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("expiry watch started", zap.Strings("projects", s.watchProjects), zap.Duration("interval", s.watchInterval),
		zap.Bool("keystore_passwords", passwords != nil))
	return watcher, nil
}
