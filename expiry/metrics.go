package expiry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the watcher's series. Label values are project, keystore, certificate
// and environment names and the fixed kinds and reasons: never a password.
type Metrics struct {
	expiry   *prometheus.GaugeVec
	failures *prometheus.CounterVec
	lastRead *prometheus.GaugeVec
}

// NewMetrics registers the watcher's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "apiops_worker", Name: "certificate_expiry_timestamp_seconds",
			Help: "When a certificate expires (its NotAfter, in seconds since 1970), by project, kind (certificate: one APIOps lists; keystore: the first to expire in a keystore's file), name and environment. Exported by the active instance for the watched projects.",
		}, []string{"project", "kind", "name", "environment"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "apiops_worker", Name: "expiry_read_failures_total",
			Help: "Certificates, keystores or lists whose expiry the watcher could not read, by project, kind and reason (apiops_error, no_password, unreadable_file, unrecognised_response).",
		}, []string{"project", "kind", "reason"}),
		lastRead: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "apiops_worker", Name: "expiry_last_read_timestamp_seconds",
			Help: "When the watcher last finished reading a project's certificates and keystores (seconds since 1970), whether or not parts failed.",
		}, []string{"project"}),
	}
	reg.MustRegister(m.expiry, m.failures, m.lastRead)
	return m
}

// watch gives project's failure counters their series at zero, so that increase()
// sees the first failure.
func (m *Metrics) watch(project string) {
	for _, kind := range []string{KindCertificate, KindKeystore} {
		for _, reason := range Reasons() {
			m.failures.WithLabelValues(project, kind, reason)
		}
	}
}

func (m *Metrics) set(e Entry) {
	m.expiry.WithLabelValues(e.Project, e.Kind, e.Name, e.Environment).Set(float64(e.NotAfter.Unix()))
}

func (m *Metrics) remove(project string, k entryKey) {
	m.expiry.DeleteLabelValues(project, k.kind, k.name, k.environment)
}

func (m *Metrics) fail(project string, f Failure) {
	m.failures.WithLabelValues(project, f.Kind, f.Reason).Inc()
}

// standby drops the expiry series and read times: only the active instance reports
// them, so that the fleet reports each certificate once.
func (m *Metrics) standby() {
	m.expiry.Reset()
	m.lastRead.Reset()
}
