package client

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// serviceName is the worker's name in NATS service discovery ($SRV).
const serviceName = "apiops-worker"

// The service metadata keys under which a worker announces the public key to seal
// secrets for, and every key it can open with (comma-separated, the current last).
const (
	sealKeyMetadata  = "seal_key"
	sealKeysMetadata = "seal_keys"
)

// maxCommandSizeMetadata is the service metadata key under which a worker announces
// the largest command it takes, in bytes (its --max-command-size).
const maxCommandSizeMetadata = "max_command_size"

// DefaultMaxCommandSize is the workers' default largest command in bytes
// (worker.DefaultMaxCommandSize): a publisher assumes it when no worker announces its
// own.
const DefaultMaxCommandSize = 512 << 10

const (
	// discoverWait bounds the wait for answers to service discovery; discoverQuiet
	// ends it sooner once answers have stopped coming.
	discoverWait  = time.Second
	discoverQuiet = 250 * time.Millisecond
	// discoverTimeout bounds the discovery that New makes.
	discoverTimeout = 5 * time.Second
)

// discovery collects the answers of apiops-worker services for DiscoverSealKey and
// DiscoverMaxCommandSize.
var discovery = InfoCollector{
	Wait:  discoverWait,
	Quiet: discoverQuiet,
	Keep:  func(info micro.Info) bool { return info.Name == serviceName },
}

// Instance is a running worker instance as NATS service discovery shows it.
type Instance struct {
	ID      string
	Version string
	// SealKey is the public curve key it announces as current ("" when it has none),
	// and SealKeys every key it can open with, the current one last.
	SealKey  string
	SealKeys []string
	// MaxCommandSize is the largest command it takes in bytes, its headers included
	// (its --max-command-size); 0 when it does not announce it (versions before).
	MaxCommandSize int
}

// DiscoverSealKey asks NATS service discovery ($SRV.INFO.apiops-worker) for the
// running workers with subject prefix prefix (those whose status endpoint is
// <prefix>.worker.status) and returns the public key to seal secrets for: a key that
// every instance can open with, since any of them may run the command. Of those, it
// is the current key of the most instances, then the newest. So during a rotation
// publishers switch to the new key only once every instance holds it. instances are
// all the instances of prefix that answered, by ID.
//
// It trusts whoever answers: with the shipped NATS permissions, the workers and
// operators. A publisher that must not depend on that seals for a key it was given
// (WithSealKey).
//
// It waits for answers up to a second, less once they stop coming, or until ctx ends.
// The error says when no instance answered, when one has no keys, or when the
// instances have no key in common.
func DiscoverSealKey(ctx context.Context, nc *nats.Conn, prefix string) (key string, instances []Instance, err error) {
	infos, err := discovery.Collect(ctx, nc)
	if err != nil {
		return "", nil, err
	}
	status := prefix + ".worker.status"
	instances, others := instancesOf(infos, status)
	if len(instances) == 0 {
		if others > 0 {
			return "", nil, fmt.Errorf("discover the seal key: no %s instance with prefix %q answered (status endpoint %s); %d with other prefixes did", serviceName, prefix, status, others)
		}
		return "", nil, fmt.Errorf("discover the seal key: no %s instance answered on $SRV.INFO.%s: is a worker running, and may this user publish to $SRV.INFO.%s?", serviceName, serviceName, serviceName)
	}
	key, err = commonKey(instances)
	if err != nil {
		return "", instances, fmt.Errorf("discover the seal key: %w", err)
	}
	return key, instances, nil
}

// instancesOf is the instances among infos whose status endpoint is status, by ID,
// and how many answers came from other instances (of other prefixes).
func instancesOf(infos []micro.Info, status string) (instances []Instance, others int) {
	seen := map[string]bool{}
	for _, info := range infos {
		if !slices.ContainsFunc(info.Endpoints, func(e micro.EndpointInfo) bool { return e.Subject == status }) {
			others++
			continue
		}
		if seen[info.ID] {
			continue // an instance answers once
		}
		seen[info.ID] = true
		in := Instance{ID: info.ID, Version: info.Version, SealKey: info.Metadata[sealKeyMetadata]}
		if held := info.Metadata[sealKeysMetadata]; held != "" {
			in.SealKeys = strings.Split(held, ",")
		} else if in.SealKey != "" {
			in.SealKeys = []string{in.SealKey}
		}
		if n, err := strconv.Atoi(info.Metadata[maxCommandSizeMetadata]); err == nil && n > 0 {
			in.MaxCommandSize = n
		}
		instances = append(instances, in)
	}
	slices.SortFunc(instances, func(a, b Instance) int { return cmp.Compare(a.ID, b.ID) })
	return instances, others
}

// DiscoverMaxCommandSize asks NATS service discovery ($SRV.INFO.apiops-worker) for the
// running workers with subject prefix prefix and returns the largest command, in
// bytes with its headers, that every one of them takes: the smallest size they
// announce. announced is false when none announces one (no worker answered, or only
// versions before the announcement); size is then DefaultMaxCommandSize, what a
// worker takes unless configured otherwise. The error is only for a discovery that
// could not be made (the connection, or ctx ended); size is then the default too.
//
// It waits for answers as DiscoverSealKey does.
func DiscoverMaxCommandSize(ctx context.Context, nc *nats.Conn, prefix string) (size int, announced bool, err error) {
	infos, err := discovery.Collect(ctx, nc)
	if err != nil {
		return DefaultMaxCommandSize, false, err
	}
	instances, _ := instancesOf(infos, prefix+".worker.status")
	for _, in := range instances {
		if in.MaxCommandSize > 0 && (!announced || in.MaxCommandSize < size) {
			size, announced = in.MaxCommandSize, true
		}
	}
	if !announced {
		return DefaultMaxCommandSize, false, nil
	}
	return size, true, nil
}

// commonKey chooses the key to seal for (see DiscoverSealKey).
func commonKey(instances []Instance) (string, error) {
	var keyless []string
	held := map[string]int{} // by key: how many instances hold it
	for _, in := range instances {
		if len(in.SealKeys) == 0 {
			keyless = append(keyless, in.ID)
		}
		for _, k := range in.SealKeys {
			held[k]++
		}
	}
	if len(keyless) == len(instances) {
		return "", fmt.Errorf("none of the %d %s instances announces a seal key: start them with their seal keys (--seal-keys)", len(instances), serviceName)
	}
	if len(keyless) > 0 {
		return "", fmt.Errorf("%d of the %d %s instances hold no seal key (%s) and would reject sealed secrets: give every instance the keys first", len(keyless), len(instances), serviceName, strings.Join(keyless, ", "))
	}
	current := map[string]int{} // by key held by all: how many announce it as current
	for _, in := range instances {
		if held[in.SealKey] == len(instances) {
			current[in.SealKey]++
		}
	}
	newest := instances[0].SealKeys // in the order of one instance's files: the newest last
	position := func(k string) int { return slices.Index(newest, k) }
	best := ""
	for k, n := range current {
		if best == "" || n > current[best] || n == current[best] && position(k) > position(best) {
			best = k
		}
	}
	if best != "" {
		return best, nil
	}
	for i := len(newest) - 1; i >= 0; i-- { // no current key is held by all: the newest that is
		if held[newest[i]] == len(instances) {
			return newest[i], nil
		}
	}
	return "", fmt.Errorf("the %d %s instances hold no seal key in common: add the current key to every instance's --seal-keys", len(instances), serviceName)
}

// InfoCollector asks NATS service discovery for the running apiops-worker instances
// ($SRV.INFO.apiops-worker) and collects their answers until one of its stop rules
// ends the wait: Wait after the request, Quiet after the last answer once one is kept,
// the end of the context, or, with EndOnError, any failure to receive. The publishers'
// discovery (DiscoverSealKey, DiscoverMaxCommandSize) and the worker's look for
// instances of an earlier version both collect with it.
type InfoCollector struct {
	// Wait bounds the wait for answers, from the request; 0 leaves it to the context
	// and Quiet.
	Wait time.Duration
	// Quiet, when not 0, ends the wait sooner once an answer has been kept and no
	// other has come for Quiet.
	Quiet time.Duration
	// Keep chooses the answers collected; nil keeps every answer that decodes.
	Keep func(micro.Info) bool
	// EndOnError ends the wait without an error when receiving fails, the end of the
	// context included: the answers kept until then are returned. Without it, the end
	// of the context and any failure other than no responders are errors.
	EndOnError bool
}

// Collect sends the request on nc and returns the answers kept, in the order they came.
// The error says that the request could not be sent or, without EndOnError, that ctx
// ended (the answers are then nil) or that receiving failed.
func (c InfoCollector) Collect(ctx context.Context, nc *nats.Conn) ([]micro.Info, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("service discovery: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$SRV.INFO."+serviceName, inbox, nil); err != nil {
		return nil, fmt.Errorf("service discovery: %w", err)
	}
	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if c.Wait > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, c.Wait)
	}
	defer cancel()
	var infos []micro.Info
	for {
		msgCtx, stop := waitCtx, context.CancelFunc(func() {})
		if c.Quiet > 0 && len(infos) > 0 {
			msgCtx, stop = context.WithTimeout(waitCtx, c.Quiet)
		}
		msg, err := sub.NextMsgWithContext(msgCtx)
		stop()
		if err != nil {
			return c.ended(ctx, infos, err)
		}
		var info micro.Info
		if json.Unmarshal(msg.Data, &info) == nil && (c.Keep == nil || c.Keep(info)) {
			infos = append(infos, info)
		}
	}
}

// ended is what Collect returns when receiving fails with err.
func (c InfoCollector) ended(ctx context.Context, infos []micro.Info, err error) ([]micro.Info, error) {
	switch {
	case c.EndOnError:
		return infos, nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("service discovery: %w", context.Cause(ctx))
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders):
		return infos, nil // no more answers, or none at all
	default:
		return infos, fmt.Errorf("service discovery: %w", err)
	}
}
