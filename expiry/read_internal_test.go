package expiry

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseDate(t *testing.T) {
	want := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, raw := range []string{`"2026-03-04T05:06:07Z"`, `"2026-03-04T05:06:07.000Z"`, `"2026-03-04T07:06:07+02:00"`,
		`"2026-03-04T05:06:07"`, `"2026-03-04T05:06:07.123456"`, `"2026-03-04T07:06:07.5+0200"`, `1772600767000`} {
		got, ok := parseDate(json.RawMessage(raw))
		if !ok || !got.Truncate(time.Second).Equal(want) {
			t.Errorf("%s: %v %v, want %v", raw, got, ok, want)
		}
	}
	if got, ok := parseDate(json.RawMessage(`"2026-03-04"`)); !ok || !got.Equal(want.Truncate(24*time.Hour)) {
		t.Errorf("a date alone: %v %v", got, ok)
	}
	for _, raw := range []string{`""`, `"soon"`, `null`, `true`, `-5`, ``} {
		if got, ok := parseDate(json.RawMessage(raw)); ok {
			t.Errorf("%s read as %v", raw, got)
		}
	}
}

// A certificate without a readable endDate is read from its content: base64 of DER,
// or of PEM; one with neither is a failure.
func TestCertificateDatesFallBackToContent(t *testing.T) {
	const der = "MIIBmDCCAT2gAwIBAgIQZ5Ciy" // cut: not a certificate
	env := map[string]json.RawMessage{"endDate": json.RawMessage(`"later"`), "base64EncodedContent": json.RawMessage(`"` + der + `"`)}
	if _, _, err := certificateDates(env); err == nil {
		t.Error("a damaged content was read")
	}
	if _, _, err := certificateDates(map[string]json.RawMessage{}); err == nil {
		t.Error("an entry without a date or content was read")
	}
}
