package messages

import (
	"crypto/hmac"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"
)

func digestWith(key string) func([]byte) []byte {
	return func(value []byte) []byte {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(value)
		return mac.Sum(nil)
	}
}

func mustDecodeLine(t *testing.T, line string) *Command {
	t.Helper()
	cmd, err := DecodeLine([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestFingerprintNamesWhatDiffers(t *testing.T) {
	const base = `{"id":"rot-1","type":"keystore.create","project":"P","params":{"name":"trust-2027",` +
		`"keyStoreEnvironmentList":[{"environmentName":"prod","keyStoreType":"PKCS12","file":"AAAA","password":"pw-1"}]}}`
	first := mustDecodeLine(t, base).Fingerprint(digestWith("k"))
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"same params", "", "", nil},
		{"another name", `"trust-2027"`, `"legacy-2019"`, []string{"params.name"}},
		{"another password", `"pw-1"`, `"pw-2"`, []string{"params.keyStoreEnvironmentList[0].password"}},
		{"another file", `"AAAA"`, `"BBBB"`, []string{"params.keyStoreEnvironmentList[0].file"}},
		{"a field added", `"name":"trust-2027",`, `"name":"trust-2027","description":"d",`, []string{"params.description"}},
		{"other envelope fields do not count", `"project":"P",`, `"project":"P","correlationId":"again","replyTo":"_INBOX.P.x",`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			again := mustDecodeLine(t, strings.Replace(base, tc.from, tc.to, 1)).Fingerprint(digestWith("k"))
			if got := first.Differences(again, true); !slices.Equal(got, tc.want) {
				t.Errorf("differences %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("secrets digested with another key are left out", func(t *testing.T) {
		other := mustDecodeLine(t, strings.Replace(base, `"pw-1"`, `"pw-2"`, 1)).Fingerprint(digestWith("other"))
		if got := first.Differences(other, false); len(got) != 0 {
			t.Errorf("differences %q, want none", got)
		}
	})
}

// A fingerprint keeps neither a secret's value nor a plain hash of it.
func TestFingerprintKeepsNoSecret(t *testing.T) {
	cmd := mustDecodeLine(t, `{"id":"a","type":"keystore.create","project":"P","params":{"name":"n",`+
		`"keyStoreEnvironmentList":[{"environmentName":"prod","keyStoreType":"PKCS12","file":"c2VjcmV0LWZpbGU=","password":"hunter2-password"}]}}`)
	fp := cmd.Fingerprint(digestWith("k"))
	plain := cmd.Fingerprint(nil)
	for path, digest := range fp {
		if strings.Contains(digest, "hunter2") || strings.Contains(digest, "c2VjcmV0") {
			t.Errorf("%s keeps the value: %s", path, digest)
		}
		if strings.HasSuffix(path, "password") && digest == secretPrefix+plainDigest("hunter2-password") {
			t.Errorf("%s is a plain hash of the password", path)
		}
	}
	if _, ok := plain["params.keyStoreEnvironmentList[0].password"]; ok {
		t.Error("a secret fingerprinted without the workers' key")
	}
}
