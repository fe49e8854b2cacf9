package expiry_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/expiry"
	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

// The seed's certificates and keystores with the days each expires in (DemoSeed's
// expiresInDays for MyProject, e.g. client-2025: 12, legacy-2019: -40); the others
// expire in 365 days.
var seededDays = simulator.DemoSeed().Projects["MyProject"].ExpiresInDays

const seededPassword = "changeit" // the simulator's default keystore password

// rig is the simulator served over HTTP, an APIOps client of it, and a watcher's
// metrics and logs.
type rig struct {
	sim    *simulator.Server
	client *apiops.Client
	reg    *prometheus.Registry
	m      *expiry.Metrics
	logs   *observer.ObservedLogs
	log    *zap.Logger
	url    string
}

func newRig(t *testing.T, d simulator.Dialect) *rig {
	t.Helper()
	seed := simulator.DemoSeed()
	sim := simulator.New(seed)
	sim.SetDialect(d)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	client, err := apiops.New(srv.URL, apiops.StaticToken(seed.Token))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	reg := prometheus.NewRegistry()
	return &rig{sim: sim, client: client, reg: reg, m: expiry.NewMetrics(reg), logs: logs, log: zap.New(core), url: srv.URL}
}

func (r *rig) watcher(t *testing.T, passwords expiry.Passwords, projects ...string) *expiry.Watcher {
	t.Helper()
	w, err := expiry.New(expiry.Config{Source: r.client, Projects: projects, Passwords: passwords, Metrics: r.m, Logger: r.log})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// logText is every log line with its fields, as JSON.
func (r *rig) logText() string {
	var b strings.Builder
	for _, e := range r.logs.All() {
		line, _ := json.Marshal(e.ContextMap())
		b.WriteString(e.Message + " " + string(line) + "\n")
	}
	return b.String()
}

func (r *rig) gauge(kind, name, env string) (float64, bool) {
	g, err := r.reg.Gather()
	if err != nil {
		return 0, false
	}
	for _, f := range g {
		if f.GetName() != "apiops_worker_certificate_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["name"] == name && labels["environment"] == env {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func (r *rig) failures(project, kind, reason string) float64 {
	g, _ := r.reg.Gather()
	for _, f := range g {
		if f.GetName() != "apiops_worker_expiry_read_failures_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["project"] == project && labels["kind"] == kind && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// daysLeft is how many days from now t is, rounded.
func daysLeft(t time.Time) int { return int(time.Until(t).Round(24*time.Hour) / (24 * time.Hour)) }

// TestReadsCertificatesAndKeystores reads the seed's MyProject in every dialect: each
// certificate in each environment, each keystore's file in each environment opened
// with its password, the dates those were made with; gauges for every one; no
// failure; and no password in the logs.
func TestReadsCertificatesAndKeystores(t *testing.T) {
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			r := newRig(t, d)
			w := r.watcher(t, expiry.PasswordFunc(r.sim.KeystorePassword), "MyProject")
			table := w.Read(context.Background(), "MyProject")
			if table.Failures != 0 {
				t.Fatalf("%d failures: %+v\nlogs:\n%s", table.Failures, table.Failed, r.logText())
			}
			seen := map[string]int{}
			for _, e := range table.Entries {
				if e.Project != "MyProject" || e.Environment == "" || e.Subject == "" {
					t.Errorf("entry %+v", e)
				}
				want, ok := seededDays[e.Name]
				if !ok {
					want = 365
				}
				if got := daysLeft(e.NotAfter); got != want {
					t.Errorf("%s %s in %s: expires in %d days, want %d", e.Kind, e.Name, e.Environment, got, want)
				}
				if v, ok := r.gauge(e.Kind, e.Name, e.Environment); !ok || v != float64(e.NotAfter.Unix()) {
					t.Errorf("%s %s in %s: gauge %v (%v), want %d", e.Kind, e.Name, e.Environment, v, ok, e.NotAfter.Unix())
				}
				seen[e.Kind+" "+e.Name]++
			}
			for _, name := range []string{"keystore client-2025", "keystore trust-2025", "keystore legacy-2019", "keystore trust-2026", "keystore client-2026"} {
				// The seed's, each with a file for production and staging.
				if seen[name] != 2 { // production and staging
					t.Errorf("%s: %d entries, want 2 (one per environment)", name, seen[name])
				}
			}
			if seen["certificate partner-cert-2025"] == 0 || seen["certificate partner-cert-2026"] == 0 {
				t.Errorf("certificates missing: %v", seen)
			}
			for i := 1; i < len(table.Entries); i++ {
				if table.Entries[i].NotAfter.Before(table.Entries[i-1].NotAfter) {
					t.Errorf("entries not sorted by NotAfter at %d", i)
				}
			}
			if strings.Contains(r.logText(), seededPassword) {
				t.Errorf("a password in the logs:\n%s", r.logText())
			}
		})
	}
}

// TestMissingPassword: keystores without a password file are counted and logged as
// no_password; those with one are read; the read goes on. Neither the password nor
// its file shows in the logs.
func TestMissingPassword(t *testing.T) {
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			r := newRig(t, d)
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "MyProject.client-2025"), []byte(seededPassword+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			w := r.watcher(t, expiry.DirPasswords{Dir: dir}, "MyProject")
			table := w.Read(context.Background(), "MyProject")
			if n := r.failures("MyProject", expiry.KindKeystore, expiry.ReasonNoPassword); n < 4 {
				t.Errorf("no_password failures %v, want one at least for each of the 4 keystores without a file", n)
			}
			if table.Failures == 0 || table.Failures != len(table.Failed) {
				t.Errorf("table failures %d, %d listed", table.Failures, len(table.Failed))
			}
			for _, f := range table.Failed {
				if f.Reason != expiry.ReasonNoPassword || f.Name == "client-2025" {
					t.Errorf("failure %+v", f)
				}
			}
			if _, ok := r.gauge(expiry.KindKeystore, "client-2025", "production"); !ok {
				t.Error("client-2025, whose password file is there, has no gauge")
			}
			if _, ok := r.gauge(expiry.KindCertificate, "partner-cert-2025", "production"); !ok {
				t.Error("the certificates were not read")
			}
			logs := r.logText()
			if !strings.Contains(logs, `"reason":"no_password"`) || !strings.Contains(logs, "trust-2025") {
				t.Errorf("no failure logged naming the keystore:\n%s", logs)
			}
			if strings.Contains(logs, seededPassword) {
				t.Errorf("a password in the logs:\n%s", logs)
			}
		})
	}
}

// TestSealedPasswordFile: a password file may hold a value sealed for the worker's
// key, bound to its project and the field "password"; one bound to another project
// is refused, naming neither value.
func TestSealedPasswordFile(t *testing.T) {
	keyDir, dir := t.TempDir(), t.TempDir()
	pub, err := seal.GenerateKeyFile(filepath.Join(keyDir, "k1.xk"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := seal.NewDirKeys(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, project string) {
		sealed, err := seal.Seal(pub, messages.SealedContent{Project: project, Field: "password", Value: seededPassword})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(sealed)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("MyProject.client-2025", "MyProject")
	write("MyProject.trust-2025", "TeamA")
	p := expiry.DirPasswords{Dir: dir, Opener: keys}
	if got, err := p.Password("MyProject", "client-2025", "production"); err != nil || string(got) != seededPassword {
		t.Errorf("sealed password: %v", err)
	}
	_, err = p.Password("MyProject", "trust-2025", "production")
	if err == nil || !strings.Contains(err.Error(), "another project") || strings.Contains(err.Error(), seededPassword) {
		t.Errorf("a password sealed for another project: %v", err)
	}
	if _, err := (expiry.DirPasswords{Dir: dir}).Password("MyProject", "client-2025", ""); err == nil || !strings.Contains(err.Error(), "--seal-keys") {
		t.Errorf("a sealed password without keys: %v", err)
	}
	if _, err := p.Password("MyProject", "../etc", ""); err == nil {
		t.Error("a keystore name that leaves the directory was looked up")
	}
	// A password for one environment wins over the keystore's.
	_ = os.WriteFile(filepath.Join(dir, "MyProject.client-2025.staging"), []byte("other\r\n"), 0o600)
	if got, _ := p.Password("MyProject", "client-2025", "staging"); string(got) != "other" {
		t.Errorf("the environment's password file: %q", got)
	}
}

// TestFailingAPIOps: when APIOps fails the list, the failure is counted and logged,
// the read goes on with the keystores, and the certificates read before keep their
// gauges; the next read, APIOps well again, brings them up to date. A certificate
// that is gone loses its gauge.
func TestFailingAPIOps(t *testing.T) {
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			r := newRig(t, d)
			w := r.watcher(t, expiry.PasswordFunc(r.sim.KeystorePassword), "MyProject")
			ctx := context.Background()
			if first := w.Read(ctx, "MyProject"); first.Failures != 0 {
				t.Fatalf("first read: %+v", first.Failed)
			}
			r.sim.FailNext(1, http.StatusInternalServerError, 0)
			second := w.Read(ctx, "MyProject")
			if second.Failures != 1 || second.Failed[0].Kind != expiry.KindCertificate || second.Failed[0].Reason != expiry.ReasonAPIOps {
				t.Fatalf("read with APIOps failing: %+v", second.Failed)
			}
			if n := r.failures("MyProject", expiry.KindCertificate, expiry.ReasonAPIOps); n != 1 {
				t.Errorf("apiops_error failures %v, want 1", n)
			}
			if _, ok := r.gauge(expiry.KindCertificate, "partner-cert-2025", "production"); !ok {
				t.Error("a failed list dropped the certificates read before")
			}
			if !strings.Contains(r.logText(), `"reason":"apiops_error"`) {
				t.Errorf("the failure is not logged:\n%s", r.logText())
			}

			req, _ := http.NewRequest(http.MethodDelete, r.url+"/apiops/projects/MyProject/certificates/partner-cert-2026/", nil)
			req.Header.Set("Authorization", "Bearer "+simulator.DemoSeed().Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("delete a certificate: %v %v", err, resp)
			}
			resp.Body.Close()
			third := w.Read(ctx, "MyProject")
			if third.Failures != 0 {
				t.Fatalf("third read: %+v", third.Failed)
			}
			if _, ok := r.gauge(expiry.KindCertificate, "partner-cert-2026", "production"); ok {
				t.Error("a deleted certificate keeps its gauge")
			}
			for _, e := range third.Entries {
				if e.Name == "partner-cert-2026" {
					t.Errorf("a deleted certificate in the table: %+v", e)
				}
			}
		})
	}
}

// countingSource counts the certificate lists read.
type countingSource struct {
	expiry.Source
	reads atomic.Int32
}

func (c *countingSource) Read(ctx context.Context, req messages.APIRequest) ([]map[string]json.RawMessage, error) {
	if req.Path[len(req.Path)-1] == "certificates" {
		c.reads.Add(1)
	}
	return c.Source.Read(ctx, req)
}

// TestRunOnlyWhileActive: a standby reads nothing; the active instance reads at once
// and then at the interval; an instance that stops being active drops its series.
func TestRunOnlyWhileActive(t *testing.T) {
	r := newRig(t, simulator.DialectMixed)
	src := &countingSource{Source: r.client}
	var active atomic.Bool
	w, err := expiry.New(expiry.Config{Source: src, Projects: []string{"MyProject"}, Interval: 100 * time.Millisecond,
		ActiveCheck: 10 * time.Millisecond, Active: active.Load, Passwords: expiry.PasswordFunc(r.sim.KeystorePassword), Metrics: r.m, Logger: r.log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(150 * time.Millisecond)
	if n := src.reads.Load(); n != 0 {
		t.Fatalf("a standby read %d times", n)
	}
	active.Store(true)
	eventually(t, "the first read", func() bool { return src.reads.Load() == 1 })
	eventually(t, "a read at the interval", func() bool { return src.reads.Load() >= 3 })
	if _, ok := r.gauge(expiry.KindKeystore, "client-2025", "staging"); !ok {
		t.Fatal("no gauge while active")
	}
	active.Store(false)
	eventually(t, "the series dropped", func() bool {
		_, ok := r.gauge(expiry.KindKeystore, "client-2025", "staging")
		return !ok
	})
	g, _ := r.reg.Gather()
	for _, f := range g {
		if f.GetName() == "apiops_worker_expiry_last_read_timestamp_seconds" && len(f.GetMetric()) > 0 {
			t.Errorf("a standby exports %d last-read times", len(f.GetMetric()))
		}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestTablesInTheStream: the watcher's publisher makes the stream and keeps each
// project's last table, which ReadTables returns.
func TestTablesInTheStream(t *testing.T) {
	nc := natstest.Start(t).Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pub := &expiry.StreamPublisher{JS: js, Prefix: "apiops", Replicas: 1, Manage: true}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, p := range []string{"MyProject", "TeamA", "MyProject"} {
		table := expiry.Table{Project: p, ReadAt: at.Add(time.Duration(i) * time.Hour), Failures: i,
			Entries: []expiry.Entry{{Project: p, Kind: expiry.KindKeystore, Name: "k", Environment: "production", NotAfter: at}}}
		if err := pub.Publish(ctx, table); err != nil {
			t.Fatal(err)
		}
	}
	info, err := js.Stream(ctx, expiry.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := info.CachedInfo().Config; cfg.MaxMsgsPerSubject != 1 || cfg.Storage != jetstream.FileStorage || cfg.MaxBytes <= 0 {
		t.Errorf("stream config %+v", cfg)
	}
	tables, err := expiry.ReadTables(ctx, js, "apiops", nil)
	if err != nil || len(tables) != 2 {
		t.Fatalf("tables %+v, %v", tables, err)
	}
	for _, tb := range tables {
		if tb.Project == "MyProject" && (tb.Failures != 2 || len(tb.Entries) != 1 || !tb.Entries[0].NotAfter.Equal(at)) {
			t.Errorf("MyProject's table is not the last one: %+v", tb)
		}
	}
	if tables, err := expiry.ReadTables(ctx, js, "apiops", []string{"TeamA"}); err != nil || len(tables) != 1 || tables[0].Project != "TeamA" {
		t.Errorf("TeamA's table: %+v, %v", tables, err)
	}
}

func TestNewChecksProjects(t *testing.T) {
	_, err := expiry.New(expiry.Config{Source: &countingSource{}, Projects: []string{"ok", "a.b"}})
	if err == nil || !strings.Contains(err.Error(), `"a.b"`) {
		t.Errorf("error %v, want one naming the project", err)
	}
}

// noEndDates drops endDate from the certificate list, as an APIOps whose answer lacks
// it would.
type noEndDates struct{ expiry.Source }

func (n noEndDates) Read(ctx context.Context, req messages.APIRequest) ([]map[string]json.RawMessage, error) {
	items, err := n.Source.Read(ctx, req)
	if err != nil || req.Path[len(req.Path)-1] != "certificates" {
		return items, err
	}
	for _, item := range items {
		var envs []map[string]json.RawMessage
		_ = json.Unmarshal(item["certificateEnvironmentList"], &envs)
		for _, env := range envs {
			delete(env, "endDate")
		}
		item["certificateEnvironmentList"], _ = json.Marshal(envs)
	}
	return items, nil
}

// TestCertificateContentWithoutEndDate: without endDate, a certificate's expiry is
// read from its base64EncodedContent.
func TestCertificateContentWithoutEndDate(t *testing.T) {
	r := newRig(t, simulator.DialectMixed)
	w, err := expiry.New(expiry.Config{Source: noEndDates{r.client}, Projects: []string{"MyProject"}, Metrics: r.m, Logger: r.log})
	if err != nil {
		t.Fatal(err)
	}
	table := w.Read(context.Background(), "MyProject")
	found := false
	for _, e := range table.Entries {
		if e.Kind == expiry.KindCertificate && e.Name == "partner-cert-2025" {
			found = true
			if got := daysLeft(e.NotAfter); got != seededDays[e.Name] {
				t.Errorf("%s: %d days from its content, want %d", e.Name, got, seededDays[e.Name])
			}
		}
	}
	if !found {
		t.Errorf("no certificate read from its content: %+v", table)
	}
	for _, f := range table.Failed {
		if f.Kind == expiry.KindCertificate {
			t.Errorf("certificate failure %+v", f)
		}
	}
}

// TestDeposedMidReadStops: an instance deposed while it reads (here, right after the
// certificate list) sends no further request to APIOps and publishes no table, which
// would replace the new active instance's.
func TestDeposedMidReadStops(t *testing.T) {
	r := newRig(t, simulator.DialectDocs)
	var active atomic.Bool
	active.Store(true)
	src := &deposingSource{Source: r.client, depose: func() { active.Store(false) }}
	pub := &recordingPublisher{}
	w, err := expiry.New(expiry.Config{Source: src, Projects: []string{"MyProject", "TeamA"}, Active: active.Load,
		Passwords: expiry.PasswordFunc(r.sim.KeystorePassword), Publisher: pub, Metrics: r.m, Logger: r.log})
	if err != nil {
		t.Fatal(err)
	}
	r.sim.ResetRequests()
	w.ReadAll(context.Background())
	if n := len(r.sim.Requests()); n != 1 {
		t.Errorf("%d requests reached APIOps, want 1 (the certificate list, before the instance was deposed)", n)
	}
	if pub.n.Load() != 0 {
		t.Errorf("a deposed instance published %d tables", pub.n.Load())
	}
}

// deposingSource deposes its instance once the first answer arrives.
type deposingSource struct {
	expiry.Source
	depose func()
}

func (d *deposingSource) Read(ctx context.Context, req messages.APIRequest) ([]map[string]json.RawMessage, error) {
	entries, err := d.Source.Read(ctx, req)
	d.depose()
	return entries, err
}

type recordingPublisher struct{ n atomic.Int32 }

func (p *recordingPublisher) Publish(context.Context, expiry.Table) error {
	p.n.Add(1)
	return nil
}
