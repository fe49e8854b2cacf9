// Package metrics exposes the worker's Prometheus metrics and counts for NATS service
// statistics.
package metrics

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

const namespace = "apiops_worker"

// Metrics implements worker.Observer with Prometheus collectors.
type Metrics struct {
	finished      *prometheus.CounterVec
	errors        *prometheus.CounterVec
	requests      *prometheus.HistogramVec
	retries       *prometheus.CounterVec
	inFlight      prometheus.Gauge
	publishResult *prometheus.HistogramVec
	deadLetters   *prometheus.CounterVec
	paused        *prometheus.GaugeVec
	active        prometheus.Gauge

	// Totals for the NATS service statistics.
	finishedTotal, failedTotal, inFlightNow atomic.Int64
	pauseReason                             atomic.Value // worker.PauseReason
	isActive                                atomic.Bool
}

// BacklogFunc reports the consumer's backlog; it is asked at each scrape.
type BacklogFunc func(ctx context.Context) (worker.Backlog, error)

// New registers the collectors with reg, every labelled family with all its known
// label values at zero, so that a fresh worker exposes every series: dashboards show
// zeros rather than "no data", and rate() alerts work before the first event.
// backlog, if not nil, is asked at each scrape.
func New(reg prometheus.Registerer, version, commit string, backlog BacklogFunc) *Metrics {
	m := &Metrics{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "commands_finished_total",
			Help: "Commands finished, by type and final status.",
		}, []string{"type", "status"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "command_errors_total",
			Help: "Commands that did not succeed, by type and error code (the worker's codes, APIOps's common ones, http_4xx, http_5xx or other).",
		}, []string{"type", "code"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "apiops_request_duration_seconds",
			Help:    "APIOps request duration, by command type and HTTP status class (2xx, 3xx, 4xx, 5xx, or error when no response came).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"type", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "retries_total",
			Help: "APIOps requests sent again for a command after a transient failure or while paused.",
		}, []string{"type"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "commands_in_flight",
			Help: "Commands being processed now.",
		}),
		publishResult: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "publish_to_result_seconds",
			Help: "Time from a command's publish to its result, by type and final status.",
			// Up to 11 minutes: a Retry-After or a pause may hold a command that long.
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 18),
		}, []string{"type", "status"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "dead_letters_total",
			Help: "Dead letters published, by command type and status.",
		}, []string{"type", "status"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "paused",
			Help: "1 while the worker holds back some project's commands for the reason (outage: APIOps unreachable or throttling; unauthorized: token refused).",
		}, []string{"reason"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "active",
			Help: "1 while this instance holds the lease and takes the commands; 0 while it is a standby.",
		}),
	}
	m.initialise()
	m.pauseReason.Store(worker.Running)
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels say which build runs.",
	}, []string{"version", "commit", "go_version"})
	buildInfo.WithLabelValues(version, commit, runtime.Version()).Set(1)
	reg.MustRegister(m.finished, m.errors, m.requests, m.retries, m.inFlight, m.publishResult, m.deadLetters, m.paused, m.active, buildInfo)
	if backlog != nil {
		reg.MustRegister(backlogCollector(backlog))
	}
	return m
}

// initialise creates every series whose label values are known in advance.
func (m *Metrics) initialise() {
	for _, typeName := range typeNames() {
		for _, status := range statuses {
			m.finished.WithLabelValues(typeName, string(status))
			m.publishResult.WithLabelValues(typeName, string(status))
			if status != messages.StatusSucceeded {
				m.deadLetters.WithLabelValues(typeName, string(status))
			}
		}
		for _, code := range errorCodes {
			m.errors.WithLabelValues(typeName, code)
		}
		for _, class := range []string{"2xx", "3xx", "4xx", "5xx", "error"} {
			m.requests.WithLabelValues(typeName, class)
		}
		m.retries.WithLabelValues(typeName)
	}
	for _, reason := range []worker.PauseReason{worker.Outage, worker.Unauthorized} {
		m.paused.WithLabelValues(string(reason)).Set(0)
	}
}

var statuses = []messages.Status{messages.StatusSucceeded, messages.StatusPartial, messages.StatusFailed,
	messages.StatusRejected, messages.StatusExpired, messages.StatusSkipped}

// typeNames are the values of the type label: what worker.Observer may be told.
func typeNames() []string {
	names := []string{messages.PlanType, "unknown"}
	for _, ct := range messages.Types() {
		names = append(names, ct.Name)
	}
	return names
}

// errorCodes are the values of command_errors_total's code label: the codes the
// contract names, and http_<class>xx for any http_<status>.
var errorCodes = append(messages.KnownCodes(), "http_4xx", "http_5xx", "other")

func errorCodeLabel(code string) string {
	code = messages.PublicCode(code)
	if n, ok := strings.CutPrefix(code, "http_"); ok {
		if n[0] != '4' && n[0] != '5' {
			return "other"
		}
		return "http_" + n[:1] + "xx"
	}
	return code
}

// backlogCollector reports the consumer's backlog at each scrape, -1 for what cannot be
// read (before the worker is set up, or with NATS unreachable).
func backlogCollector(backlog BacklogFunc) prometheus.Collector {
	pending := prometheus.NewDesc(namespace+"_consumer_pending_commands",
		"Commands waiting in the stream for the worker's consumer, not yet delivered (-1 when unknown).", nil, nil)
	ackPending := prometheus.NewDesc(namespace+"_consumer_ack_pending_commands",
		"Commands delivered to an instance and not yet finished (-1 when unknown).", nil, nil)
	oldest := prometheus.NewDesc(namespace+"_oldest_pending_age_seconds",
		"Age of the oldest command not yet finished, 0 when none waits (-1 when unknown).", nil, nil)
	return collectorFunc{descs: []*prometheus.Desc{pending, ackPending, oldest}, collect: func(ch chan<- prometheus.Metric) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		p, a, age := -1.0, -1.0, -1.0
		if b, err := backlog(ctx); err == nil {
			p, a = float64(b.Pending), float64(b.AckPending)
			switch {
			case b.OldestUnknown:
			case b.Oldest.IsZero():
				age = 0
			default:
				age = max(0, time.Since(b.Oldest).Seconds())
			}
		}
		ch <- prometheus.MustNewConstMetric(pending, prometheus.GaugeValue, p)
		ch <- prometheus.MustNewConstMetric(ackPending, prometheus.GaugeValue, a)
		ch <- prometheus.MustNewConstMetric(oldest, prometheus.GaugeValue, age)
	}}
}

type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func (m *Metrics) CommandStarted() { m.inFlight.Inc(); m.inFlightNow.Add(1) }
func (m *Metrics) CommandDone()    { m.inFlight.Dec(); m.inFlightNow.Add(-1) }

func (m *Metrics) CommandFinished(typeName string, status messages.Status, errorCode string, sincePublish time.Duration) {
	m.finished.WithLabelValues(typeName, string(status)).Inc()
	m.publishResult.WithLabelValues(typeName, string(status)).Observe(sincePublish.Seconds())
	m.finishedTotal.Add(1)
	if status != messages.StatusSucceeded {
		m.failedTotal.Add(1)
		m.errors.WithLabelValues(typeName, errorCodeLabel(errorCode)).Inc()
	}
}

func (m *Metrics) APIOpsRequest(typeName string, statusCode int, d time.Duration) {
	m.requests.WithLabelValues(typeName, statusClass(statusCode)).Observe(d.Seconds())
}

func (m *Metrics) Retry(typeName string) { m.retries.WithLabelValues(typeName).Inc() }

func (m *Metrics) DeadLetter(typeName string, status messages.Status) {
	m.deadLetters.WithLabelValues(typeName, string(status)).Inc()
}

func (m *Metrics) Paused(reason worker.PauseReason) {
	m.pauseReason.Store(reason)
	for _, r := range []worker.PauseReason{worker.Outage, worker.Unauthorized} {
		v := 0.0
		if r == reason {
			v = 1
		}
		m.paused.WithLabelValues(string(r)).Set(v)
	}
}

func (m *Metrics) Active(active bool) {
	m.isActive.Store(active)
	if active {
		m.active.Set(1)
	} else {
		m.active.Set(0)
	}
}

// Stats are the counts shown by `nats micro stats`.
type Stats struct {
	Role         string `json:"role"` // active or standby
	Finished     int64  `json:"commands_finished"`
	NotSucceeded int64  `json:"commands_not_succeeded"`
	InFlight     int64  `json:"commands_in_flight"`
	Paused       string `json:"paused,omitempty"`
}

// Stats returns the counts since start.
func (m *Metrics) Stats() Stats {
	return Stats{
		Role:     Role(m.isActive.Load()),
		Finished: m.finishedTotal.Load(), NotSucceeded: m.failedTotal.Load(), InFlight: m.inFlightNow.Load(),
		Paused: string(m.pauseReason.Load().(worker.PauseReason)),
	}
}

// Role names an instance's part in the fleet.
func Role(active bool) string {
	if active {
		return "active"
	}
	return "standby"
}

func statusClass(code int) string {
	if code == 0 {
		return "error"
	}
	return strconv.Itoa(code/100) + "xx"
}

var _ worker.Observer = (*Metrics)(nil)
