package messages_test

import (
	"bytes"
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
)

func TestRedactSecrets(t *testing.T) {
	cases := []struct {
		name, in, want string
		redacted       bool
	}{
		{"keystore entries", `{"id":"a","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"p","file":"QUJD","password":"pw","keyStoreType":"JKS"},{"file" : "REVG", "password":"p\"w"}]}}`,
			`{"id":"a","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"p","file":"[REDACTED]","password":"[REDACTED]","keyStoreType":"JKS"},{"file" : "[REDACTED]", "password":"[REDACTED]"}]}}`, true},
		{"nothing secret", `{"id":"a","params":{"username":"file","keystoreName":"password"}}`, `{"id":"a","params":{"username":"file","keystoreName":"password"}}`, false},
		{"non-string and nested values", `{"password":{"x":[1,"y"]},"a":[{"file":null}],"b":{"c":{"password":5}}}`,
			`{"password":"[REDACTED]","a":[{"file":"[REDACTED]"}],"b":{"c":{"password":"[REDACTED]"}}}`, true},
		{"escaped key", `{"pass\u0077ord":"pw"}`, `{"pass\u0077ord":"[REDACTED]"}`, true},
		{"already redacted", `{"password":"[REDACTED]"}`, `{"password":"[REDACTED]"}`, false},
		{"capitalised keys", `{"Password":"pw","params":{"FILE":"QUJD"}}`, `{"Password":"[REDACTED]","params":{"FILE":"[REDACTED]"}}`, true},
		{"invalid JSON with a secret", `{"id":"a","params":{"file":"QUJD","password":"p\"w"`, `"[REDACTED: not valid JSON, and it may hold a secret]"`, true},
		{"invalid JSON, escaped key", `{"pass\u0077ord":"s3cret"`, `"[REDACTED: not valid JSON, and it may hold a secret]"`, true},
		{"invalid JSON, number", `{"Password":12345678`, `"[REDACTED: not valid JSON, and it may hold a secret]"`, true},
		{"invalid JSON without secrets", `{"id":"a","params":{"username":"u"}`, `{"id":"a","params":{"username":"u"}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, redacted := messages.RedactSecrets([]byte(tc.in))
			if string(got) != tc.want || redacted != tc.redacted {
				t.Errorf("got %s %v\nwant %s %v", got, redacted, tc.want, tc.redacted)
			}
		})
	}
}

func TestRedactExamples(t *testing.T) {
	for name, data := range exampleCommands(t) {
		got, redacted := messages.RedactSecrets(data)
		wantRedacted := bytes.Contains(data, []byte(`"password"`)) || bytes.Contains(data, []byte(`"content"`))
		if redacted != wantRedacted || bytes.Contains(got, []byte("changeit")) || bytes.Contains(got, []byte("PRIVATE KEY")) {
			t.Errorf("%s: redacted=%v: %s", name, redacted, got)
		}
	}
}
