package expiry_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// buildBinaries compiles apiops-worker and apiopsctl for the black-box test.
func buildBinaries(t *testing.T) (worker, ctl string) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"apiops-worker", "apiopsctl"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "../cmd/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return filepath.Join(dir, "apiops-worker"), filepath.Join(dir, "apiopsctl")
}

// logLines collects a process's JSON log lines.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

func (l *logLines) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		_ = json.Unmarshal(sc.Bytes(), &line)
		l.mu.Lock()
		l.lines = append(l.lines, line)
		l.raw.Write(sc.Bytes())
		l.raw.WriteByte('\n')
		l.mu.Unlock()
	}
}

// field is the value of key in the first line whose msg is msg.
func (l *logLines) field(msg, key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if line["msg"] == msg {
			v, _ := line[key].(string)
			return v
		}
	}
	return ""
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// TestDemoWorkerWatchesExpiry is the feature end to end, with the real binaries:
// `apiops-worker --demo --watch-projects MyProject` exports the expiry of the
// simulator's certificates and keystores within one interval, and `apiopsctl expiry
// --within 30d` lists those due, soonest first.
func TestDemoWorkerWatchesExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	workerBin, ctlBin := buildBinaries(t)
	const interval = 10 * time.Second
	worker := exec.Command(workerBin, "--demo", "--watch-projects", "MyProject", "--watch-interval", interval.String(),
		"--listen", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	stderr, err := worker.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() { defer close(readDone); logs.read(stderr) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = worker.Process.Signal(syscall.SIGTERM)
		<-readDone
		if err := worker.Wait(); err != nil {
			t.Errorf("the worker did not exit cleanly: %v\n%s", err, logs.String())
		}
	}
	t.Cleanup(stop)

	var natsURL, httpAddr string
	for deadline := time.Now().Add(30 * time.Second); natsURL == "" || httpAddr == "" || logs.field("worker started", "msg") == ""; time.Sleep(20 * time.Millisecond) {
		natsURL, httpAddr = logs.field("embedded NATS server started", "url"), logs.field("serving metrics and health", "addr")
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not start:\n%s", logs.String())
		}
	}
	started := time.Now()

	// Within one interval of the start, the gauge of every certificate and keystore of
	// the seed's MyProject, in both environments.
	want := map[string]int{} // kind/name/environment: days
	for _, name := range []string{"client-2025", "client-2026", "trust-2025", "trust-2026", "legacy-2019"} {
		for _, env := range []string{"production", "staging"} {
			want["keystore/"+name+"/"+env] = days(name)
		}
	}
	var got map[string]float64
	for {
		got = expiryGauges(t, httpAddr)
		complete := true
		for k := range want {
			if _, ok := got[k]; !ok {
				complete = false
			}
		}
		if complete && got["certificate/partner-cert-2025/production"] != 0 {
			break
		}
		if time.Since(started) > interval {
			t.Fatalf("after %v (the interval), the gauges are %v\nlogs:\n%s", time.Since(started), got, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for k, v := range got {
		kind, name, _ := strings.Cut(k, "/")
		name, _, _ = strings.Cut(name, "/")
		if kind != "certificate" && kind != "keystore" {
			t.Errorf("series %s", k)
		}
		if left := time.Until(time.Unix(int64(v), 0)).Hours() / 24; int(math.Round(left)) != days(name) {
			t.Errorf("%s expires in %.2f days, want %d", k, left, days(name))
		}
	}

	// apiopsctl expiry --within 30d: the ones due, soonest first, nothing else.
	var out, errOut bytes.Buffer
	ctl := exec.Command(ctlBin, "expiry", "--within", "30d")
	ctl.Env = append(ctl.Environ(), "NATS_URL="+natsURL)
	ctl.Stdout, ctl.Stderr = &out, &errOut
	if err := ctl.Run(); err != nil {
		t.Fatalf("apiopsctl expiry: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("row %q", line)
		}
		rows = append(rows, strings.Join(f[1:], " "))
	}
	// The rows are the gauges due within 30 days, soonest first (each certificate in
	// the environments the simulator lists it in).
	type due struct {
		notAfter float64
		row      string
	}
	var dues []due
	names := map[string]bool{}
	for k, v := range got {
		kind, rest, _ := strings.Cut(k, "/")
		name, env, _ := strings.Cut(rest, "/")
		if d := days(name); d <= 30 {
			dues = append(dues, due{v, fmt.Sprintf("%dd MyProject %s %s %s", d, kind, name, env)})
			names[name] = true
		}
	}
	slices.SortFunc(dues, func(a, b due) int { return cmp.Or(cmp.Compare(a.notAfter, b.notAfter), strings.Compare(a.row, b.row)) })
	var wantRows []string
	for _, d := range dues {
		wantRows = append(wantRows, d.row)
	}
	for _, name := range []string{"legacy-2019", "partner-cert-2025", "client-2025", "trust-2025"} { // -40, 9, 12, 25 days
		if !names[name] {
			t.Errorf("%s is not due within 30 days", name)
		}
	}
	if strings.Join(rows, "\n") != strings.Join(wantRows, "\n") {
		t.Errorf("apiopsctl expiry --within 30d:\n%s\nwant rows:\n%s", out.String(), strings.Join(wantRows, "\n"))
	}
	if !strings.Contains(errOut.String(), "expire within 30d, in 1 project watched") {
		t.Errorf("apiopsctl expiry's stderr: %s", errOut.String())
	}
	stop()
	if strings.Contains(logs.String(), "changeit") {
		t.Errorf("a keystore password in the worker's log")
	}
}

// days is the seed's expiresInDays of a keystore or certificate of MyProject.
func days(name string) int {
	if d, ok := seededDays[name]; ok {
		return d
	}
	return 365
}

// expiryGauges reads the worker's expiry gauges: kind/name/environment to NotAfter.
func expiryGauges(t *testing.T, httpAddr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range families["apiops_worker_certificate_expiry_timestamp_seconds"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		if l["project"] != "MyProject" {
			t.Errorf("a series of project %q", l["project"])
		}
		out[fmt.Sprintf("%s/%s/%s", l["kind"], l["name"], l["environment"])] = m.GetGauge().GetValue()
	}
	return out
}
