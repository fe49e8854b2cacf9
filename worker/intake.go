package worker

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Intake: where commands come from. Each project has a consumer of its own, filtered
// on its subjects, so that one project's backlog never stands in front of another's
// command (see fairness.go and docs/design/fairness.md). The active instance finds the
// projects in the command stream's subjects and makes their consumers as they appear;
// it pulls from each in a loop of its own, asking only for what the project's share of
// the room lets it hold.
//
// Instances of earlier versions shared one consumer of every project's subjects. While
// any of them runs, that consumer stays, and this instance takes commands from it as
// they do. Once none runs, the active instance lets the commands out on it come back
// or finish, and deletes it: consumers of a work queue may not overlap.

// source is a consumer commands are pulled from: a project's, or the shared one.
type source struct {
	name    string
	project string // "" for the shared consumer
	// consumer is replaced when the consumer is set up again.
	consumer atomic.Pointer[jetstream.Consumer]
	pulling  atomic.Bool // a pull loop runs for it in the current term
	// draining: the shared consumer on its way out: nothing more is pulled from it.
	draining atomic.Bool

	// Guarded by Worker.mu, for the current term (takeover.go):
	watching      bool   // deliveries are checked for gaps
	lastDelivery  uint64 // the consumer sequence of the last delivery seen
	deliveryKnown bool   // lastDelivery is known
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

// ensureSource returns project's source, making its consumer when there is none.
func (w *Worker) ensureSource(ctx context.Context, project string) (*source, error) {
	if src := w.sources.get(w.projectConsumerName(project)); src != nil {
		return src, w.watch(ctx, src, nil)
	}
	c, err := w.js.CreateOrUpdateConsumer(ctx, w.cfg.CommandStream, w.projectConsumerConfig(project))
	if err != nil {
		return nil, fmt.Errorf("create the consumer of project %q: %w", truncateRunes(project, 64), err)
	}
	src := w.addSource(project, c)
	return src, w.watch(ctx, src, c.CachedInfo())
}

// discoverEvery is how often the active instance looks for projects without a consumer:
// a new project's first command waits at most this long for its consumer.
const discoverEvery = 250 * time.Millisecond

// projectsWaiting lists the projects that have commands in the stream, from the
// stream's subjects.
func (w *Worker) projectsWaiting(ctx context.Context) ([]string, error) {
	stream, err := w.js.Stream(ctx, w.cfg.CommandStream)
	if err != nil {
		return nil, err
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(w.subjects.AllCommands()))
	if err != nil {
		return nil, err
	}
	var projects []string
	for subject := range info.State.Subjects {
		if project, _, err := w.subjects.ParseCommand(subject); err == nil && !slices.Contains(projects, project) {
			projects = append(projects, project)
		}
	}
	return projects, nil
}

// intake pulls commands for one lease term, until ctx ends: from the shared consumer
// while earlier instances run, else from every project's, looking for new projects
// every discoverEvery.
func (w *Worker) intake(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(src *source) {
		if src.pulling.CompareAndSwap(false, true) {
			wg.Go(func() {
				defer src.pulling.Store(false)
				w.pullFrom(ctx, src)
			})
		}
	}
	failing := ""
	for ctx.Err() == nil {
		if shared := w.shared.Load(); shared != nil {
			if !shared.draining.Load() {
				start(shared)
			}
			w.replaceShared(ctx)
		}
		if w.shared.Load() == nil && w.lease.canStart() {
			err := w.startProjects(ctx, start)
			if msg := fmt.Sprint(err); err != nil && msg != failing {
				w.log.Warn("cannot look for new projects in the command stream; trying again", zap.Error(err))
			}
			failing = fmt.Sprint(err)
		}
		w.checkBarriers(ctx)
		w.keepBucketDigestKey(ctx)
		select {
		case <-w.cfg.Clock.After(discoverEvery):
		case <-ctx.Done():
		}
	}
}

// startProjects starts pulling from every project's consumer, making the consumers of
// projects that have none.
func (w *Worker) startProjects(ctx context.Context, start func(*source)) error {
	var errs []error
	for _, src := range w.sources.list() {
		if err := w.watch(ctx, src, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		start(src)
	}
	projects, err := w.projectsWaiting(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("read the command stream's subjects: %w", err))...)
	}
	for _, project := range projects {
		src, err := w.ensureSource(ctx, project)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		start(src)
	}
	return errors.Join(errs...)
}

// watch starts watching src's deliveries in this term, from info or, when nil, from
// the consumer's state now, unless it is watched already: its barrier must know every
// command out before the first pull.
func (w *Worker) watch(ctx context.Context, src *source, info *jetstream.ConsumerInfo) error {
	w.mu.Lock()
	watching := src.watching
	w.mu.Unlock()
	if watching {
		return nil
	}
	fresh := info != nil
	if !fresh {
		var err error
		if info, err = src.get().Info(ctx); err != nil {
			return fmt.Errorf("read consumer %s: %w", src.name, err)
		}
	}
	w.startTerm(src, info, fresh && info.Delivered.Consumer == 0)
	return nil
}

// pullFrom delivers src's commands into the worker until ctx ends (or src is drained).
// It asks the server only for as many commands as the project's share of the room lets
// it hold, so that every command delivered is held, and kept alive, from its arrival: a
// command waiting unseen in a client buffer would be redelivered after AckWait and run
// twice. While the worker is fenced (its lease not renewed in time), or the project is
// paused, it asks for none.
func (w *Worker) pullFrom(ctx context.Context, src *source) {
	for ctx.Err() == nil && !src.draining.Load() {
		if changed := w.lease.awaitChange(); !w.mayStart() {
			select {
			case <-changed:
			case <-w.cfg.Clock.After(w.lease.interval()):
			case <-ctx.Done():
			}
			continue
		}
		var paused <-chan struct{}
		if src.project != "" {
			reason, resumed, p := w.gates.of(src.project).state()
			if reason != Running {
				select {
				case <-resumed:
				case <-ctx.Done():
				}
				continue
			}
			paused = p
		}
		n := w.reserve(ctx, src.roomKey(), paused)
		if n == 0 {
			continue
		}
		if ctx.Err() != nil || !w.mayStart() {
			// reserve may have waited for room long enough for the lease to lapse (the
			// process was frozen, say): a pull now would hand commands to an instance
			// that may not run them.
			w.room.free(src.roomKey(), n)
			continue
		}
		batch, err := src.get().Fetch(n, jetstream.FetchMaxWait(pullWait))
		if err != nil {
			w.room.free(src.roomKey(), n)
			w.pullFailed(ctx, src, err)
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			w.admit(msg, src)
		}
		w.room.free(src.roomKey(), n-got)
		if err := batch.Error(); err != nil {
			w.pullFailed(ctx, src, err)
		}
		w.checkBarrier(ctx, src)
	}
}

const (
	// pullWait bounds one pull request: how long an idle project's loop waits for
	// commands, and how long shutdown may wait for a pull already sent.
	pullWait = time.Second
	// gatherWait is how long a pull waits for more room before asking, so that a busy
	// project is asked for commands in batches rather than one at a time.
	gatherWait = 2 * time.Millisecond
	// maxPull bounds the commands one pull asks for.
	maxPull = 256
)

// reserve takes room for at least one command of key; it waits up to gatherWait for
// room for a quarter of the worker's commands, then takes whatever else is free within
// the share (at most one pull's worth). It returns 0 when ctx ends or the project
// pauses.
func (w *Worker) reserve(ctx context.Context, key string, paused <-chan struct{}) int {
	wanted := false
	var done func()
	defer func() {
		if wanted {
			done()
		}
	}()
	for {
		changed := w.room.changed()
		if w.room.take(key, 1) == 1 {
			break
		}
		if !wanted {
			wanted, done = true, w.room.want(key)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0
		case <-paused:
			return 0
		}
	}
	n, enough := 1, max(1, w.cfg.held()/4)
	gather := time.NewTimer(gatherWait)
	defer gather.Stop()
	for n < enough {
		changed := w.room.changed()
		if w.room.take(key, 1) == 1 {
			n++
			continue
		}
		select {
		case <-changed:
		case <-gather.C:
			enough = 0
		}
	}
	return n + w.room.take(key, maxPull-n)
}

// pullFailed handles a failed pull: a consumer that is gone is made again (a project's)
// or forgotten (the shared one).
func (w *Worker) pullFailed(ctx context.Context, src *source, err error) {
	if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, nats.ErrNoResponders) {
		w.log.Error("a consumer is gone; setting it up again", zap.String("consumer", src.name), zap.Error(err))
		w.rebind(ctx, src)
		return
	}
	w.log.Warn("pulling commands", zap.String("consumer", src.name), zap.Error(err))
	select { // no busy loop while the server is unreachable
	case <-w.cfg.Clock.After(w.cfg.RetryInitial):
	case <-ctx.Done():
	}
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
