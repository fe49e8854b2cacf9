package messages_test

import (
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
)

func TestPublicCodeKeepsOnlyTheContractsCodes(t *testing.T) {
	for code, want := range map[string]string{
		"retries_exhausted": "retries_exhausted", "bad_request": "bad_request", "http_503": "http_503",
		"http_5031": "other", "http_abc": "other", "http_": "other", "changeit": "other", "": "other",
		"server_error s3cret": "other",
	} {
		if got := messages.PublicCode(code); got != want {
			t.Errorf("PublicCode(%q) = %q, want %q", code, got, want)
		}
	}
}
