package messages_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
)

func TestScrubberRemovesSecretsAndTheirStarts(t *testing.T) {
	const password = "s3cret-Passw0rd!"
	file := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("keystore-bytes-", 10)))
	cmd, err := messages.Decode("P", "keystore.create", []byte(`{"id":"a","params":{"name":"k","keyStoreEnvironmentList":[`+
		`{"environmentName":"production","file":"`+file+`","password":"`+password+`","keyStoreType":"PKCS12"},`+
		`{"environmentName":"staging","file":"`+file+`","password":"abc","keyStoreType":"PKCS12"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	s := cmd.Scrubber()
	for _, tc := range []struct{ in, want string }{
		{"Invalid password " + password + " for keystore", "Invalid password [REDACTED] for keystore"},
		{"password b64 " + base64.StdEncoding.EncodeToString([]byte(password)), "password b64 [REDACTED]"},
		{"bad file " + file[:40] + "... (truncated)", "bad file [REDACTED]... (truncated)"},
		{"bad file " + file + file, "bad file [REDACTED][REDACTED]"},
		{"short start " + file[:15] + " stays", "short start " + file[:15] + " stays"},
		{"a password of three characters, abc, is no secret to scrub", "a password of three characters, abc, is no secret to scrub"},
		{"Keystore (name: k) is already exist!", "Keystore (name: k) is already exist!"},
	} {
		if got := s.Scrub(tc.in); got != tc.want {
			t.Errorf("Scrub(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := messages.NewScrubber("the-apiops-token").Scrub(`{"error":"the-apiops-token is not valid"}`); strings.Contains(got, "the-apiops-token") {
		t.Errorf("token kept: %s", got)
	}
	var none *messages.Scrubber
	if none.Scrub("x") != "x" {
		t.Error("a nil Scrubber changed the text")
	}
}
