// Package metrics exposes the worker's Prometheus metrics and counts for NATS service
// statistics.
package metrics

import (
	"context"
	"strconv"
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
	requests      *prometheus.HistogramVec
	retries       *prometheus.CounterVec
	inFlight      prometheus.Gauge
	publishResult prometheus.Histogram
	deadLetters   *prometheus.CounterVec
	paused        *prometheus.GaugeVec
	active        prometheus.Gauge

	// Totals for the NATS service statistics.
	finishedTotal, failedTotal, inFlightNow atomic.Int64
	pauseReason                             atomic.Value // worker.PauseReason
	isActive                                atomic.Bool
}

// PendingFunc reports how many commands wait in the consumer.
type PendingFunc func(ctx context.Context) (uint64, error)

// New registers the collectors with reg. pending, if not nil, is asked at each scrape.
func New(reg prometheus.Registerer, pending PendingFunc) *Metrics {
	m := &Metrics{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "commands_finished_total",
			Help: "Commands finished, by type and final status.",
		}, []string{"type", "status"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "apiops_request_duration_seconds",
			Help:    "APIOps request duration, by command type and HTTP status class (2xx, 4xx, 5xx, or error when no response came).",
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
		publishResult: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "publish_to_result_seconds",
			Help:    "Time from a command's publish to its result.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "dead_letters_total",
			Help: "Dead letters published, by command type and status.",
		}, []string{"type", "status"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "paused",
			Help: "1 while the worker is paused for the reason (outage: APIOps unreachable; unauthorized: token refused).",
		}, []string{"reason"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "active",
			Help: "1 while this instance holds the lease and takes the commands; 0 while it is a standby.",
		}),
	}
	for _, reason := range []worker.PauseReason{worker.Outage, worker.Unauthorized} {
		m.paused.WithLabelValues(string(reason)).Set(0)
	}
	m.pauseReason.Store(worker.Running)
	reg.MustRegister(m.finished, m.requests, m.retries, m.inFlight, m.publishResult, m.deadLetters, m.paused, m.active)
	if pending != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "consumer_pending_commands",
			Help: "Commands waiting in the stream for the worker's consumer (-1 when unknown).",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := pending(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	}
	return m
}

func (m *Metrics) CommandStarted() { m.inFlight.Inc(); m.inFlightNow.Add(1) }
func (m *Metrics) CommandDone()    { m.inFlight.Dec(); m.inFlightNow.Add(-1) }

func (m *Metrics) CommandFinished(typeName string, status messages.Status, sincePublish time.Duration) {
	m.finished.WithLabelValues(typeName, string(status)).Inc()
	m.publishResult.Observe(sincePublish.Seconds())
	m.finishedTotal.Add(1)
	if status != messages.StatusSucceeded {
		m.failedTotal.Add(1)
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
