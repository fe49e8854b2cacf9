package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"

	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/messages"
)

// APIOps executes a command's request; *apiops.Client implements it.
type APIOps interface {
	Do(ctx context.Context, req messages.APIRequest) (*apiops.Response, error)
	// Read sends a GET and returns the entries APIOps answered with (a proxy.verify's
	// reads; see apiops.Client.Read).
	Read(ctx context.Context, req messages.APIRequest) ([]map[string]json.RawMessage, error)
}

// Config configures a Worker. Zero fields take the defaults below.
type Config struct {
	// Prefix is the subjects' first token(s); default "apiops".
	Prefix string
	// Stream and bucket names, and their replicas.
	CommandStream, ResultStream, DeadStream, IdempotencyBucket string
	Replicas                                                   int
	// ResultMaxAge and DeadMaxAge bound how long results and dead letters are kept.
	ResultMaxAge, DeadMaxAge time.Duration
	// StreamMaxBytes bounds each stream and the bucket on disk, so that no publisher
	// can fill the server's storage. See streams.go for the other limits.
	StreamMaxBytes int64
	// MaxCommandSize bounds one command; well under the server's maximum payload, so
	// that its dead letter, the command and the worker's headers, fits too.
	MaxCommandSize int32
	// ManageStreams creates or updates the streams, the bucket and the consumer at
	// start. Switch it off when an operator manages them; they must then exist.
	ManageStreams bool
	// Consumer is the durable pull consumer all instances share.
	Consumer string

	// Concurrency bounds the commands executing against APIOps at once; twice as many
	// are held, the others looking up or storing their outcome.
	Concurrency int
	// MaxAttempts bounds the APIOps requests that may fail transiently for one command,
	// across redeliveries; requests made while the worker is paused do not count.
	MaxAttempts int
	// RetryInitial and RetryMax are the backoff's first and longest wait; while paused,
	// the worker probes APIOps every RetryMax.
	RetryInitial, RetryMax time.Duration
	// OutageThreshold is how many transient failures in a row, across all commands and
	// with no success between them, mean that APIOps is down rather than one command
	// unlucky: the worker then pauses.
	OutageThreshold int
	// ShutdownTimeout is how long commands in flight may take to finish at shutdown
	// before they are handed back.
	ShutdownTimeout time.Duration
	// IdempotencyWindow is how long a finished id is remembered.
	IdempotencyWindow time.Duration
	// AckWait is how long JetStream waits for an ack before redelivering; the worker
	// extends it with InProgress for commands it holds. A dead active instance's
	// commands come back this long after its last sign of life.
	AckWait time.Duration
	// LeaseTimeout is how long a standby waits, with no renewal of the active
	// instance's lease seen, before it takes over; the active instance renews every
	// quarter of it and starts no APIOps request once three quarters pass without a
	// successful renewal.
	LeaseTimeout time.Duration

	// Instance names this instance in the lease and the logs; default InstanceName().
	Instance string
	// OlderInstances lists the running instances of a version before the lease, which
	// pull from the consumer on their own (for example from NATS service discovery).
	// While any runs, the consumer is left as they set it up. Nil means none can run.
	OlderInstances func(ctx context.Context) ([]string, error)

	// Opener opens sealed secrets with the worker's keys (see package seal); nil means
	// the worker has none, and a command with a sealed secret is rejected.
	Opener messages.Opener
	// DigestKeys digest secrets in idempotency records (seal.DirKeys does); nil means a
	// key kept in the idempotency bucket (see fingerprint.go).
	DigestKeys DigestKeys
	// RequireSealed rejects commands with plaintext secrets.
	RequireSealed bool

	Logger *zap.Logger
	// Observer is told what happens, for metrics; nil means NopObserver.
	Observer Observer
	// TracerProvider makes the spans of each command (see tracing.go); nil means no
	// tracing, at no cost.
	TracerProvider trace.TracerProvider
	// Clock is the time source of retries and probes; nil means the real clock.
	Clock Clock
}

// Clock is what the worker needs of time, so that tests can replace it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Defaults.
const (
	DefaultCommandStream     = "APIOPS_COMMANDS"
	DefaultResultStream      = "APIOPS_RESULTS"
	DefaultDeadStream        = "APIOPS_DEAD"
	DefaultIdempotencyBucket = "APIOPS_IDEMPOTENCY"
	DefaultConsumer          = "apiops-worker"
	DefaultConcurrency       = 16
	DefaultMaxAttempts       = 5
	DefaultRetryInitial      = 500 * time.Millisecond
	DefaultRetryMax          = 30 * time.Second
	DefaultOutageThreshold   = 3
	DefaultShutdownTimeout   = 25 * time.Second
	DefaultIdempotencyWindow = 24 * time.Hour
	DefaultAckWait           = 5 * time.Second
	DefaultLeaseTimeout      = 4 * time.Second
	DefaultResultMaxAge      = 7 * 24 * time.Hour
	DefaultDeadMaxAge        = 30 * 24 * time.Hour
	DefaultStreamMaxBytes    = 2 << 30
	DefaultMaxCommandSize    = 512 << 10
	// duplicateWindow is the streams' duplicate window, as the contract states.
	duplicateWindow = 10 * time.Minute
)

// withDefaults fills zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	setDefault(&c.Prefix, messages.DefaultPrefix)
	setDefault(&c.CommandStream, DefaultCommandStream)
	setDefault(&c.ResultStream, DefaultResultStream)
	setDefault(&c.DeadStream, DefaultDeadStream)
	setDefault(&c.IdempotencyBucket, DefaultIdempotencyBucket)
	setDefault(&c.Consumer, DefaultConsumer)
	setDefault(&c.Replicas, 1)
	setDefault(&c.Concurrency, DefaultConcurrency)
	setDefault(&c.MaxAttempts, DefaultMaxAttempts)
	setDefault(&c.RetryInitial, DefaultRetryInitial)
	setDefault(&c.RetryMax, DefaultRetryMax)
	setDefault(&c.OutageThreshold, DefaultOutageThreshold)
	setDefault(&c.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&c.IdempotencyWindow, DefaultIdempotencyWindow)
	setDefault(&c.AckWait, DefaultAckWait)
	setDefault(&c.LeaseTimeout, DefaultLeaseTimeout)
	if c.Instance == "" {
		c.Instance = InstanceName()
	}
	setDefault(&c.ResultMaxAge, DefaultResultMaxAge)
	setDefault(&c.DeadMaxAge, DefaultDeadMaxAge)
	setDefault(&c.StreamMaxBytes, DefaultStreamMaxBytes)
	setDefault(&c.MaxCommandSize, DefaultMaxCommandSize)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Observer == nil {
		c.Observer = NopObserver{}
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Concurrency > 0, "concurrency must be positive, not %d", c.Concurrency)
	check(c.MaxAttempts > 0, "max-attempts must be positive, not %d", c.MaxAttempts)
	check(c.RetryInitial > 0 && c.RetryMax >= c.RetryInitial, "retry-max (%v) must be at least retry-initial (%v), both positive", c.RetryMax, c.RetryInitial)
	check(c.OutageThreshold > 0 && c.OutageThreshold <= c.MaxAttempts,
		"outage-threshold (%d) must be from 1 to max-attempts (%d): else an outage could use up a command's retries before it pauses the worker", c.OutageThreshold, c.MaxAttempts)
	check(c.ShutdownTimeout > 0, "shutdown-timeout must be positive, not %v", c.ShutdownTimeout)
	check(c.AckWait >= time.Second, "ack wait must be at least 1s, not %v", c.AckWait)
	check(c.LeaseTimeout >= time.Second, "lease timeout must be at least 1s, not %v", c.LeaseTimeout)
	check(c.Replicas > 0 && c.Replicas <= 5, "replicas must be 1 to 5, not %d", c.Replicas)
	check(c.MaxCommandSize >= 16<<10, "max command size must be at least 16KiB, not %d bytes", c.MaxCommandSize)
	check(c.StreamMaxBytes >= 64<<20, "stream max bytes must be at least 64MiB, not %d", c.StreamMaxBytes)
	check(messages.CheckPrefix(c.Prefix) == "", "prefix %q %s", c.Prefix, messages.CheckPrefix(c.Prefix))
	return c, errors.Join(errs...)
}

// InstanceName is a name for this process unique in the fleet: the host (the pod's
// name in Kubernetes) and a random suffix, since a restarted process is another
// instance.
func InstanceName() string {
	host, _ := os.Hostname()
	return host + "-" + nuid.Next()
}

// held is how many commands the worker holds at most, outside a takeover.
func (c Config) held() int { return 4 * c.Concurrency }

// maxAckPending is the consumer's bound on unacknowledged commands, across the fleet.
// While taking over, the active instance may hold this many (see barrier), so it also
// bounds that instance's memory.
func (c Config) maxAckPending() int { return max(1000, 4*c.Concurrency) }

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
