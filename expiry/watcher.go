package expiry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/messages"
)

// Defaults of Config.
const (
	DefaultInterval    = time.Hour
	DefaultActiveCheck = time.Second
	// jitter spreads the reads by up to this fraction of the interval either way, so
	// that fleets started together do not read APIOps in step.
	jitter = 0.1
)

// Publisher receives each project's table after a read; StreamPublisher is the
// worker's.
type Publisher interface {
	Publish(ctx context.Context, t Table) error
}

// Config is a Watcher's settings.
type Config struct {
	Source   Source
	Projects []string
	// Interval between reads, jittered by ±10% (DefaultInterval when zero).
	Interval time.Duration
	// Active reports whether this instance is the active one: only it reads. Nil:
	// always.
	Active func() bool
	// ActiveCheck is how often Active is asked (DefaultActiveCheck when zero).
	ActiveCheck time.Duration
	// Passwords open keystores' files; nil: every keystore fails with no_password.
	Passwords Passwords
	// Publisher, if set, gets each project's table after each read.
	Publisher Publisher
	// Metrics, if nil, are registered with a registry of their own.
	Metrics *Metrics
	Logger  *zap.Logger
	// Now is the clock of ReadAt (time.Now when nil).
	Now func() time.Time
}

// Watcher reads the watched projects' certificates and keystores at an interval
// while its instance is active, and reports them.
type Watcher struct {
	cfg Config
	r   reader
	// known is what was reported per project: entries not read again because their
	// read failed are kept, entries no longer listed are dropped.
	known map[string]map[entryKey]Entry
	// environments are the environment names each project's last certificate list
	// showed: where the keystore list names environments by id only, they are tried,
	// also when the certificate list fails once.
	environments map[string][]string
}

// New checks cfg and returns its watcher.
func New(cfg Config) (*Watcher, error) {
	if cfg.Source == nil {
		return nil, errors.New("expiry watch: no APIOps source")
	}
	if len(cfg.Projects) == 0 {
		return nil, errors.New("expiry watch: no project to watch")
	}
	for _, p := range cfg.Projects {
		if problem := messages.CheckProject(p); problem != "" {
			return nil, fmt.Errorf("expiry watch: project %q %s", p, problem)
		}
	}
	if cfg.Interval < 0 || cfg.ActiveCheck < 0 {
		return nil, errors.New("expiry watch: the interval and the active check must not be negative")
	}
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.ActiveCheck = cmp.Or(cfg.ActiveCheck, DefaultActiveCheck)
	if cfg.Active == nil {
		cfg.Active = func() bool { return true }
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Projects = slices.Clone(cfg.Projects)
	for _, p := range cfg.Projects {
		cfg.Metrics.watch(p)
	}
	return &Watcher{cfg: cfg, r: reader{src: cfg.Source, passwords: cfg.Passwords}, known: map[string]map[entryKey]Entry{}, environments: map[string][]string{}}, nil
}

// Run reads every watched project as soon as this instance is active, then every
// Interval (jittered) while it stays active, until ctx ends. An instance that stops
// being active drops its expiry series, and reads at once when it becomes active
// again. Failures are counted and logged; Run returns only when ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	check := time.NewTicker(w.cfg.ActiveCheck)
	defer check.Stop()
	for {
		for !w.cfg.Active() {
			select {
			case <-ctx.Done():
				return
			case <-check.C:
			}
		}
		w.ReadAll(ctx)
		next := time.NewTimer(w.nextWait())
		for active := true; active; {
			select {
			case <-ctx.Done():
				next.Stop()
				return
			case <-next.C:
				w.ReadAll(ctx)
				next.Reset(w.nextWait())
			case <-check.C:
				if !w.cfg.Active() {
					active = false
					next.Stop()
					w.standby()
				}
			}
		}
	}
}

// nextWait is the interval, jittered by up to ±10%.
func (w *Watcher) nextWait() time.Duration {
	return time.Duration(float64(w.cfg.Interval) * (1 + jitter*(2*rand.Float64()-1)))
}

// standby forgets what was reported: the active instance reports it now.
func (w *Watcher) standby() {
	w.cfg.Metrics.standby()
	clear(w.known)
	w.cfg.Logger.Info("expiry watch: this instance is no longer active; its expiry series are dropped")
}

// ReadAll reads every watched project once, in order, while this instance stays
// active: every request is sent only if it still is (apiops.WithSendGuard), so that an
// instance deposed mid-read stops reading.
func (w *Watcher) ReadAll(ctx context.Context) {
	ctx = apiops.WithSendGuard(ctx, w.guard)
	for _, p := range w.cfg.Projects {
		if ctx.Err() != nil || !w.cfg.Active() {
			return
		}
		w.Read(ctx, p)
	}
}

// errNotActive is why a read or a publish of a deposed instance does not go out.
var errNotActive = errors.New("this instance is no longer the active one")

func (w *Watcher) guard() error {
	if !w.cfg.Active() {
		return errNotActive
	}
	return nil
}

// Read reads one project's certificates and keystores, updates the metrics, logs each
// failure, publishes the table and returns it.
func (w *Watcher) Read(ctx context.Context, project string) Table {
	log := w.cfg.Logger.With(zap.String("project", project))
	certs := w.r.certificates(ctx, project)
	if len(certs.environments) > 0 {
		w.environments[project] = certs.environments
	}
	stores := w.r.keystores(ctx, project, w.environments[project])
	if ctx.Err() != nil || !w.cfg.Active() { // stopping, or deposed: a read cut short is no failure
		return Table{Project: project}
	}
	known := w.known[project]
	if known == nil {
		known = map[entryKey]Entry{}
		w.known[project] = known
	}
	t := Table{Project: project, ReadAt: w.cfg.Now().UTC()}
	for _, l := range []listing{certs, stores} {
		if l.listed {
			for k := range known {
				if k.kind == l.kind && !l.listedKeys[k] {
					delete(known, k)
					w.cfg.Metrics.remove(project, k)
				}
			}
		}
		for _, e := range l.entries {
			known[e.key()] = e
			w.cfg.Metrics.set(e)
		}
		for _, f := range l.failures {
			w.cfg.Metrics.fail(project, f)
			log.Warn("expiry watch: cannot read an expiry", zap.String("kind", f.Kind), zap.String("name", f.Name),
				zap.String("environment", f.Environment), zap.String("reason", f.Reason), zap.Error(f.err))
			t.Failed = append(t.Failed, f)
		}
	}
	t.Failures = len(t.Failed)
	for _, e := range known {
		t.Entries = append(t.Entries, e)
	}
	SortEntries(t.Entries)
	w.cfg.Metrics.lastRead.WithLabelValues(project).Set(float64(t.ReadAt.Unix()))
	log.Info("expiry watch: read", zap.Int("entries", len(t.Entries)), zap.Int("failures", t.Failures))
	// A deposed instance's table must not replace the active one's (the stream keeps
	// one per project).
	if w.cfg.Publisher != nil && w.cfg.Active() {
		if err := w.cfg.Publisher.Publish(ctx, t); err != nil {
			log.Warn("expiry watch: cannot publish the table", zap.Error(err))
		}
	}
	return t
}

// SortEntries orders entries by NotAfter, then project, kind, name and environment.
func SortEntries(entries []Entry) {
	slices.SortFunc(entries, func(a, b Entry) int {
		return cmp.Or(a.NotAfter.Compare(b.NotAfter), cmp.Compare(a.Project, b.Project), cmp.Compare(a.Kind, b.Kind),
			cmp.Compare(a.Name, b.Name), cmp.Compare(a.Environment, b.Environment))
	})
}
