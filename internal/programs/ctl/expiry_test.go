package ctl

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/expiry"
)

// TestExpiryTable: the last table of each project is read from the stream; the
// entries due within --within are printed soonest first, expired ones with a negative
// IN; --project and --output json select and shape them; failures are said on stderr.
func TestExpiryTable(t *testing.T) {
	e := newTestEnv(t)
	ctx := testContext(t)
	now := time.Now()
	in := func(days float64) time.Time {
		return now.Add(time.Duration(days * float64(24*time.Hour))).Truncate(time.Second)
	}
	pub := &expiry.StreamPublisher{JS: e.js, Prefix: "apiops", Replicas: 1, Manage: true}
	tables := []expiry.Table{
		{Project: "MyProject", ReadAt: now.Add(-2 * time.Hour), Entries: []expiry.Entry{{Name: "stale", NotAfter: in(1)}}}, // replaced below
		{Project: "MyProject", ReadAt: now.Add(-time.Hour), Failures: 2, Entries: []expiry.Entry{
			{Project: "MyProject", Kind: "keystore", Name: "client-2025", Environment: "production", NotAfter: in(12.3)},
			{Project: "MyProject", Kind: "certificate", Name: "partner-cert-2025", Environment: "staging", NotAfter: in(9.2)},
			{Project: "MyProject", Kind: "keystore", Name: "legacy-2019", Environment: "production", NotAfter: in(-40)},
			{Project: "MyProject", Kind: "keystore", Name: "trust-2026", Environment: "production", NotAfter: in(365)},
		}},
		{Project: "TeamA", ReadAt: now, Entries: []expiry.Entry{
			{Project: "TeamA", Kind: "keystore", Name: "team-a-trust", Environment: "test", NotAfter: in(20.4)},
		}},
	}
	for _, tb := range tables {
		if err := pub.Publish(ctx, tb); err != nil {
			t.Fatal(err)
		}
	}
	var out output
	if code := Expiry(ctx, []string{"--within", "30d"}, e.io("", &out)); code != 0 {
		t.Fatalf("exit %d: %s", code, out.stderr.String())
	}
	rows := lines(out.stdout.String())
	want := [][]string{
		{"NOT", "AFTER", "IN", "PROJECT", "KIND", "NAME", "ENVIRONMENT"},
		{in(-40).UTC().Format(time.RFC3339), "-40d", "MyProject", "keystore", "legacy-2019", "production"},
		{in(9.2).UTC().Format(time.RFC3339), "9d", "MyProject", "certificate", "partner-cert-2025", "staging"},
		{in(12.3).UTC().Format(time.RFC3339), "12d", "MyProject", "keystore", "client-2025", "production"},
		{in(20.4).UTC().Format(time.RFC3339), "20d", "TeamA", "keystore", "team-a-trust", "test"},
	}
	if len(rows) != len(want) {
		t.Fatalf("table:\n%s", out.stdout.String())
	}
	for i, w := range want {
		if got := strings.Fields(rows[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("row %d: %q, want %q", i, got, w)
		}
	}
	if s := out.stderr.String(); !strings.Contains(s, "4 certificates expire within 30d, in 2 projects") || !strings.Contains(s, "MyProject: 2 could not be read") {
		t.Errorf("stderr:\n%s", s)
	}

	out = output{}
	if code := Expiry(ctx, []string{"--project", "TeamA", "--project", "Other", "--within", "21d", "--output", "json"}, e.io("", &out)); code != 0 {
		t.Fatalf("exit %d: %s", code, out.stderr.String())
	}
	var row struct {
		Project, Name string
		InDays        int
	}
	if err := json.Unmarshal(out.stdout.Bytes(), &row); err != nil || row.Project != "TeamA" || row.Name != "team-a-trust" || row.InDays != 20 {
		t.Errorf("json: %q %v", out.stdout.String(), err)
	}
	if !strings.Contains(out.stderr.String(), "Other: no table") {
		t.Errorf("stderr does not name the project without a table:\n%s", out.stderr.String())
	}

	out = output{}
	if code := Expiry(ctx, []string{"--within", "240h"}, e.io("", &out)); code != 0 || len(lines(out.stdout.String())) != 3 {
		t.Errorf("--within 240h: exit %d\n%s", code, out.stdout.String())
	}
}

func TestExpiryUsageErrors(t *testing.T) {
	e := newTestEnv(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--within", "soon"}, `--within "soon"`},
		{[]string{"--within", "-1d"}, "must not be negative"},
		{[]string{"--output", "xml"}, `--output "xml"`},
		{[]string{"--project", "a.b"}, `--project "a.b"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{nil, "no worker has published a table"}, // no stream yet
	} {
		var out output
		if code := Expiry(testContext(t), c.args, e.io("", &out)); code != 1 || !strings.Contains(out.stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, out.stderr.String(), c.want)
		}
	}
}
