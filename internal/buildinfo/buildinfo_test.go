package buildinfo

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	got := String("apiops-worker")
	if !strings.HasPrefix(got, "apiops-worker "+Version+" (commit ") || !strings.Contains(got, Commit()) {
		t.Errorf("String = %q", got)
	}
}
