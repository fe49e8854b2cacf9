package worker

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Consumers: the command stream's consumers the worker pulls from, one per project,
// and while instances of an earlier version run, the consumer they share (intake.go
// says how they are used). Their configuration and binding live here.

// source is a consumer commands are pulled from: a project's, or the shared one.
type source struct {
	name    string
	project string // "" for the shared consumer
	// consumer is replaced when the consumer is set up again.
	consumer atomic.Pointer[jetstream.Consumer]
	pulling  atomic.Bool // a pull loop runs for it in the current term
	// draining: the shared consumer on its way out: nothing more is pulled from it.
	draining atomic.Bool
}

func (s *source) get() jetstream.Consumer { return *s.consumer.Load() }

// roomKey is whose share of the room the source's commands take.
func (s *source) roomKey() string { return s.project }

// sourceSet holds the sources by consumer name.
type sourceSet struct {
	mu     sync.Mutex
	byName map[string]*source
}

func newSourceSet() *sourceSet { return &sourceSet{byName: make(map[string]*source)} }

func (s *sourceSet) list() []*source {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*source, 0, len(s.byName))
	for _, src := range s.byName {
		out = append(out, src)
	}
	slices.SortFunc(out, func(a, b *source) int { return strings.Compare(a.name, b.name) })
	return out
}

func (s *sourceSet) get(name string) *source {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byName[name]
}

// add keeps src, or returns the source already kept under its name.
func (s *sourceSet) add(src *source) *source {
	s.mu.Lock()
	defer s.mu.Unlock()
	if kept := s.byName[src.name]; kept != nil {
		return kept
	}
	s.byName[src.name] = src
	return src
}

// Metadata of the worker's consumers.
const (
	// fleetMetadata marks a consumer set up by instances that use the lease; a shared
	// consumer without it may still be pulled from by instances older than the lease.
	fleetMetadata = "apiops-worker.fleet"
	// projectMetadata names a project consumer's project.
	projectMetadata = "apiops-worker.project"
)

// ProjectConsumer names the consumer of project's commands, for the fleet whose shared
// consumer (Config.Consumer) is named consumer: that name and a hash of the project,
// since a project's name may hold what a consumer's may not. Its metadata
// "apiops-worker.project" names the project.
func ProjectConsumer(consumer, project string) string {
	sum := sha256.Sum256([]byte(project))
	return consumer + "-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:10]))
}

func (w *Worker) projectConsumerName(project string) string {
	return ProjectConsumer(w.cfg.Consumer, project)
}

// projectInactive is how long a project's consumer stays after its last pull: a
// project that sends nothing for that long gets a new one when it sends again.
const projectInactive = 7 * 24 * time.Hour

// ProjectConsumerConfig is the consumer an active instance configured by cfg makes for
// project's commands: for tools that take commands the way the worker does.
func ProjectConsumerConfig(cfg Config, project string) (jetstream.ConsumerConfig, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	w := &Worker{cfg: cfg, subjects: messages.Subjects{Prefix: cfg.Prefix}}
	return w.projectConsumerConfig(project), nil
}

func (w *Worker) projectConsumerConfig(project string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:     w.projectConsumerName(project),
		Description: "apiops-worker: the commands of project " + truncateRunes(project, 64),
		// FilterSubjects rather than FilterSubject: nats.go would put a lone filter in
		// the request's subject, and a project name of a few thousand characters would
		// then make the request longer than the server's control line.
		FilterSubjects: []string{w.subjects.Command(project, ">")},
		AckPolicy:      jetstream.AckExplicitPolicy,
		// No BackOff: it would silently replace AckWait with its first entry. The
		// worker paces retries itself and keeps held commands alive with InProgress.
		AckWait:           w.cfg.AckWait,
		MaxDeliver:        -1, // a command is never dropped for being redelivered often
		MaxAckPending:     w.cfg.maxAckPending(),
		Replicas:          w.cfg.Replicas,
		InactiveThreshold: projectInactive,
		Metadata:          map[string]string{fleetMetadata: "lease", projectMetadata: project},
	}
}

func truncateRunes(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// loadSources binds the consumers the command stream has: the shared one, if any, and
// every project's. Run at set-up and at each takeover (the previous active instance may
// have made more).
func (w *Worker) loadSources(ctx context.Context) error {
	stream, err := w.js.Stream(ctx, w.cfg.CommandStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", w.cfg.CommandStream, err)
	}
	list := stream.ListConsumers(ctx)
	shared := false
	for info := range list.Info() {
		project, isProject := info.Config.Metadata[projectMetadata]
		switch {
		case info.Name == w.cfg.Consumer:
			shared = true
			if err := w.bindShared(ctx, stream, info); err != nil {
				return err
			}
		case isProject && info.Name == w.projectConsumerName(project) && w.sources.get(info.Name) == nil:
			c, err := stream.Consumer(ctx, info.Name)
			if err != nil {
				return fmt.Errorf("consumer %s: %w", info.Name, err)
			}
			w.addSource(project, c)
		}
	}
	if err := list.Err(); err != nil {
		return fmt.Errorf("list the consumers of %s: %w", w.cfg.CommandStream, err)
	}
	if !shared {
		w.shared.Store(nil)
	}
	w.bound.Store(true)
	return nil
}

func (w *Worker) addSource(project string, c jetstream.Consumer) *source {
	src := &source{name: c.CachedInfo().Name, project: project}
	src.consumer.Store(&c)
	src = w.sources.add(src)
	w.noteAckWait(c.CachedInfo())
	return src
}

// noteAckWait keeps held commands alive within the shortest AckWait of the consumers.
func (w *Worker) noteAckWait(info *jetstream.ConsumerInfo) {
	ackWait := info.Config.AckWait
	if len(info.Config.BackOff) > 0 {
		// BackOff replaces AckWait with its first entry.
		w.log.Warn("a consumer has a BackOff; the worker paces retries itself and keeps commands alive within its first entry",
			zap.String("consumer", info.Name), zap.Durations("backoff", info.Config.BackOff))
		ackWait = min(ackWait, info.Config.BackOff[0])
	}
	for {
		old := time.Duration(w.ackWait.Load())
		if old != 0 && old <= ackWait || w.ackWait.CompareAndSwap(int64(old), int64(ackWait)) {
			return
		}
	}
}

// bindShared binds the consumer earlier versions shared. One without the fleet marker
// comes from a version before the lease, whose instances pull from it on their own.
func (w *Worker) bindShared(ctx context.Context, stream jetstream.Stream, info *jetstream.ConsumerInfo) error {
	c, err := stream.Consumer(ctx, info.Name)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", info.Name, err)
	}
	if info.Config.Metadata[fleetMetadata] == "" {
		w.legacyAckWait = info.Config.AckWait
	}
	src := &source{name: info.Name}
	src.consumer.Store(&c)
	if old := w.shared.Swap(src); old == nil {
		w.log.Info("the consumer every instance of an earlier version shares is here: this instance takes commands from it while any earlier instance runs, and replaces it with one consumer per project once none does",
			zap.String("consumer", info.Name))
	}
	w.noteAckWait(info)
	return nil
}

// rebind sets a project's consumer up again after it went away (and the streams, when
// the worker manages them), every RetryMax until it works. The shared consumer is not
// made again: it is on its way out.
func (w *Worker) rebind(ctx context.Context, src *source) {
	if src.project == "" {
		w.shared.CompareAndSwap(src, nil)
		src.draining.Store(true)
		return
	}
	for ctx.Err() == nil {
		c, err := w.js.CreateOrUpdateConsumer(ctx, w.cfg.CommandStream, w.projectConsumerConfig(src.project))
		if err != nil && w.cfg.ManageStreams {
			if _, err = w.setupStreams(ctx); err == nil {
				c, err = w.js.CreateOrUpdateConsumer(ctx, w.cfg.CommandStream, w.projectConsumerConfig(src.project))
			}
		}
		if err == nil {
			src.consumer.Store(&c)
			w.log.Info("consumer set up again", zap.String("consumer", src.name))
			return
		}
		w.log.Error("cannot set up the consumer; retrying", zap.String("consumer", src.name), zap.Error(err))
		select {
		case <-w.cfg.Clock.After(w.cfg.RetryMax):
		case <-ctx.Done():
		}
	}
}
