package app

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/apiops-worker/apiops-worker/messages"
)

// The worker's families, and the label values every one of them has from the start.
var workerFamilies = map[string][]string{
	"apiops_worker_build_info":                      {"version", "commit", "go_version"},
	"apiops_worker_active":                          nil,
	"apiops_worker_paused":                          {"reason"},
	"apiops_worker_commands_in_flight":              nil,
	"apiops_worker_commands_finished_total":         {"type", "status"},
	"apiops_worker_command_errors_total":            {"type", "code"},
	"apiops_worker_publish_to_result_seconds":       {"type", "status"},
	"apiops_worker_apiops_request_duration_seconds": {"type", "code"},
	"apiops_worker_retries_total":                   {"type"},
	"apiops_worker_dead_letters_total":              {"type", "status"},
	"apiops_worker_consumer_pending_commands":       nil,
	"apiops_worker_consumer_ack_pending_commands":   nil,
	"apiops_worker_oldest_pending_age_seconds":      nil,
	// The expiry watch's, with --watch-projects MyProject.
	"apiops_worker_certificate_expiry_timestamp_seconds": {"project", "kind", "name", "environment"},
	"apiops_worker_expiry_read_failures_total":           {"project", "kind", "reason"},
	"apiops_worker_expiry_last_read_timestamp_seconds":   {"project"},
}

// TestFreshWorkerExposesEveryFamily: a worker that has done nothing exposes every
// family, each labelled one with every type and status (or code, reason) it can
// take, so that dashboards show zeros and rate() alerts can fire from the start; the
// names follow Prometheus's conventions.
func TestFreshWorkerExposesEveryFamily(t *testing.T) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(freshWorkerMetrics(t)))
	if err != nil {
		t.Fatal(err)
	}
	for name, labels := range workerFamilies {
		f := families[name]
		if f == nil || len(f.GetMetric()) == 0 {
			t.Errorf("%s missing from a fresh worker's /metrics", name)
			continue
		}
		for _, m := range f.GetMetric() {
			if got, want := labelNames(m), slices.Sorted(slices.Values(labels)); !slices.Equal(got, want) {
				t.Errorf("%s has labels %v, want %v", name, got, labels)
			}
		}
		switch {
		case f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total"):
			t.Errorf("counter %s does not end in _total", name)
		case f.GetType() != dto.MetricType_COUNTER && strings.HasSuffix(name, "_total"):
			t.Errorf("%s ends in _total but is a %v", name, f.GetType())
		case f.GetType() == dto.MetricType_HISTOGRAM && !strings.HasSuffix(name, "_seconds"):
			t.Errorf("histogram %s is not in seconds", name)
		}
	}
	for name := range families {
		if _, known := workerFamilies[name]; strings.HasPrefix(name, "apiops_worker_") && !known {
			t.Errorf("%s is not in this test's list: add it, with its labels", name)
		}
	}

	types := []string{messages.PlanType, "unknown"}
	for _, ct := range messages.Types() {
		types = append(types, ct.Name)
	}
	statuses := []string{"succeeded", "partial", "failed", "rejected", "expired", "skipped"}
	for _, typ := range types {
		for _, status := range statuses {
			for _, name := range []string{"apiops_worker_commands_finished_total", "apiops_worker_publish_to_result_seconds"} {
				if !hasSeries(families[name], map[string]string{"type": typ, "status": status}) {
					t.Errorf("no %s{type=%q,status=%q}", name, typ, status)
				}
			}
		}
		for _, code := range []string{"2xx", "3xx", "4xx", "5xx", "error"} {
			if !hasSeries(families["apiops_worker_apiops_request_duration_seconds"], map[string]string{"type": typ, "code": code}) {
				t.Errorf("no apiops_request_duration_seconds{type=%q,code=%q}", typ, code)
			}
		}
		for _, code := range []string{"retries_exhausted", "expired", "network_error", "http_5xx", "other"} {
			if !hasSeries(families["apiops_worker_command_errors_total"], map[string]string{"type": typ, "code": code}) {
				t.Errorf("no command_errors_total{type=%q,code=%q}", typ, code)
			}
		}
		if !hasSeries(families["apiops_worker_retries_total"], map[string]string{"type": typ}) ||
			!hasSeries(families["apiops_worker_dead_letters_total"], map[string]string{"type": typ, "status": "failed"}) {
			t.Errorf("no retries_total or dead_letters_total for %s", typ)
		}
	}
	for _, reason := range []string{"outage", "unauthorized"} {
		if !hasSeries(families["apiops_worker_paused"], map[string]string{"reason": reason}) {
			t.Errorf("no paused{reason=%q}", reason)
		}
	}
	for _, kind := range []string{"certificate", "keystore"} {
		for _, reason := range []string{"apiops_error", "no_password", "unreadable_file", "unrecognised_response"} {
			if !hasSeries(families["apiops_worker_expiry_read_failures_total"], map[string]string{"project": "MyProject", "kind": kind, "reason": reason}) {
				t.Errorf("no expiry_read_failures_total{kind=%q,reason=%q}", kind, reason)
			}
		}
	}
	if v := gaugeValue(families["apiops_worker_oldest_pending_age_seconds"]); v != 0 {
		t.Errorf("oldest pending age %v with nothing waiting, want 0", v)
	}
}

func labelNames(m *dto.Metric) []string {
	var names []string
	for _, l := range m.GetLabel() {
		names = append(names, l.GetName())
	}
	return names
}

func hasSeries(f *dto.MetricFamily, labels map[string]string) bool {
	for _, m := range f.GetMetric() {
		match := true
		for _, l := range m.GetLabel() {
			if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
				match = false
			}
		}
		if match {
			return true
		}
	}
	return false
}

func gaugeValue(f *dto.MetricFamily) float64 {
	if f == nil || len(f.GetMetric()) == 0 {
		return -2
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

// TestMetricsPassPromtoolLint runs Prometheus's own linter over a fresh worker's
// /metrics (naming, units, help texts). make test names promtool in PROMTOOL.
func TestMetricsPassPromtoolLint(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		t.Skip("PROMTOOL is not set: make test sets it to bin/promtool")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(freshWorkerMetrics(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
