package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
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
	if w.sched.watching(src) {
		return nil
	}
	fresh := info != nil
	if !fresh {
		var err error
		if info, err = src.get().Info(ctx); err != nil {
			return fmt.Errorf("read consumer %s: %w", src.name, err)
		}
	}
	w.sched.watch(src, info, fresh && info.Delivered.Consumer == 0)
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
		if changed := w.lease.awaitChange(); !w.exec.mayStart() {
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
		if ctx.Err() != nil || !w.exec.mayStart() {
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
