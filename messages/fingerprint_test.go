package messages

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
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

// A value given, even zero, differs from the field left out, which leaves the setting
// as it is: `"enabled": false` hardens a proxy, no "enabled" does nothing to it.
func TestFingerprintZeroIsNotMissing(t *testing.T) {
	for _, tc := range []struct {
		name, typ, base, given, want string
	}{
		{"enabled false", "proxy.mtls.update", `"apiProxyName":"P","trustStoreName":"t"`, `"enabled":false`, "params.enabled"},
		{"disableSslValidation false", "proxy.mtls.update", `"apiProxyName":"P","trustStoreName":"t"`, `"disableSslValidation":false`, "params.disableSslValidation"},
		{"keyStoreName cleared", "proxy.mtls.update", `"apiProxyName":"P","trustStoreName":"t"`, `"keyStoreName":""`, "params.keyStoreName"},
		{"every protocol allowed", "proxy.mtls.update", `"apiProxyName":"P","trustStoreName":"t"`, `"supportedProtocolList":[]`, "params.supportedProtocolList"},
		{"description emptied", "keystore.update", `"keystoreName":"k","name":"n"`, `"description":""`, "params.description"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := func(params string) string {
				return `{"id":"h-1","type":"` + tc.typ + `","project":"P","params":{` + params + `}}`
			}
			without := mustDecodeLine(t, line(tc.base)).Fingerprint(digestWith("k"))
			got := without.Differences(mustDecodeLine(t, line(tc.base+","+tc.given)).Fingerprint(digestWith("k")), true)
			if len(got) == 0 || got[0] != tc.want {
				t.Errorf("differences %q, want first %q", got, tc.want)
			}
		})
	}
}

// A record from before zero values counted has no version: it is not compared (an
// honest retry of the command it kept must not be refused), as records from before
// fingerprints are not.
func TestFingerprintOlderVersionNotCompared(t *testing.T) {
	cmd := mustDecodeLine(t, `{"id":"h-1","type":"proxy.mtls.update","project":"P","params":{"apiProxyName":"P","enabled":false}}`)
	older := Fingerprint{"params.apiProxyName": plainDigest(`"P"`)} // what the version before made of it
	if got := older.Differences(cmd.Fingerprint(digestWith("k")), true); len(got) != 0 {
		t.Errorf("an older record compared: differences %q", got)
	}
	if v := cmd.Fingerprint(nil)[versionKey]; v != fingerprintVersion {
		t.Errorf("version %q, want %q", v, fingerprintVersion)
	}
}

func planLine(correlation, keystore string) string {
	return `{"id":"plan-1","project":"P","correlationId":"` + correlation + `","replyTo":"_INBOX.P.` + correlation +
		`","notAfter":"2030-01-01T00:00:00Z","steps":[` +
		`{"type":"credential.truststore.set","params":{"username":"a","keystoreName":"` + keystore + `"}},` +
		`{"type":"proxy.mtls.update","params":{"apiProxyName":"P","enabled":false}}],` +
		`"onFailure":[{"type":"credential.truststore.set","params":{"username":"a","keystoreName":"old"}}]}`
}

// A plan is its steps' types and params: retried with another correlationId (which
// each step copies), replyTo or notAfter, it is the same plan.
func TestFingerprintPlanIsItsSteps(t *testing.T) {
	decode := func(line string) *Command {
		t.Helper()
		cmd, err := Decode("P", PlanType, []byte(line))
		if err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := decode(planLine("corr-1", "trust-1")).Fingerprint(digestWith("k"))
	if got := first.Differences(decode(planLine("corr-2", "trust-1")).Fingerprint(digestWith("k")), true); len(got) != 0 {
		t.Errorf("a retry with another correlationId differs at %q", got)
	}
	if got := first.Differences(decode(planLine("corr-1", "trust-2")).Fingerprint(digestWith("k")), true); !slices.Equal(got, []string{"steps[0].params.keystoreName"}) {
		t.Errorf("another step param: differences %q", got)
	}
}

// A keystore file is its bytes: the same file in wrapped base64 (which Go's decoder
// reads alike) is the same value; another file is not.
func TestFingerprintBase64ByItsBytes(t *testing.T) {
	file := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("keystore-bytes-", 10)))
	cmd := func(file string) *Command {
		return &Command{ID: "k-1", Type: "keystore.create", Project: "P", Params: &KeystoreCreate{Name: "n",
			KeyStoreEnvironmentList: []KeyStoreEnvironment{{EnvironmentName: "prod", KeyStoreType: "PKCS12", File: NewSecret(file), Password: NewSecret("pw")}}}}
	}
	first := cmd(file).Fingerprint(digestWith("k"))
	if got := first.Differences(cmd(file[:40]+"\r\n"+file[40:]).Fingerprint(digestWith("k")), true); len(got) != 0 {
		t.Errorf("the same file wrapped differs at %q", got)
	}
	other := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("other-bytes-", 10)))
	if got := first.Differences(cmd(other).Fingerprint(digestWith("k")), true); !slices.Equal(got, []string{"params.keyStoreEnvironmentList[0].file"}) {
		t.Errorf("another file: differences %q", got)
	}
	if plain := cmd(file).Fingerprint(nil); plain["params.keyStoreEnvironmentList[0].file"] != "" {
		t.Error("a file fingerprinted without the workers' key")
	}
}

// A fingerprint stays bounded however large the params: 100k environment names make
// one that fits a record, and any difference is still found, naming the list.
func TestFingerprintBounded(t *testing.T) {
	mtls := func(last string) *Command {
		var names strings.Builder
		for i := range 100_000 {
			fmt.Fprintf(&names, `"env-%06d",`, i)
		}
		return mustDecodeLine(t, `{"id":"big","type":"proxy.mtls.update","project":"P","params":{"apiProxyName":"P","trustStoreName":"t","deploy":true,`+
			`"deployTargetEnvironmentNameList":[`+names.String()+`"`+last+`"]}}`)
	}
	first := mtls("last").Fingerprint(digestWith("k"))
	if stored, _ := json.Marshal(first); len(stored) > maxFingerprintSize {
		t.Fatalf("a fingerprint of %d bytes", len(stored))
	}
	if got := first.Differences(mtls("last").Fingerprint(digestWith("k")), true); len(got) != 0 {
		t.Errorf("the same params differ at %q", got)
	}
	if got := first.Differences(mtls("other").Fingerprint(digestWith("k")), true); !slices.Equal(got, []string{"params.deployTargetEnvironmentNameList"}) {
		t.Errorf("another last name: differences %q, want params.deployTargetEnvironmentNameList", got)
	}

	// Collapsed groups that hold secrets compare only under the same key.
	keystores := func(password string) *Command {
		list := make([]KeyStoreEnvironment, 2000)
		for i := range list {
			list[i] = KeyStoreEnvironment{EnvironmentName: fmt.Sprintf("env-%d", i), KeyStoreType: "PKCS12", File: NewSecret("AAAA"), Password: NewSecret("pw")}
		}
		list[1999].Password = NewSecret(password)
		return &Command{ID: "ks", Type: "keystore.update", Project: "P", Params: &KeystoreUpdate{KeystoreName: "k", KeyStoreEnvironmentList: list}}
	}
	withKey := keystores("pw").Fingerprint(digestWith("k"))
	if withKey[levelKey] == "" {
		t.Fatal("a large fingerprint not collapsed")
	}
	if got := withKey.Differences(keystores("pw-2").Fingerprint(digestWith("k")), true); !slices.Equal(got, []string{"params.keyStoreEnvironmentList"}) {
		t.Errorf("another password: differences %q", got)
	}
	for _, other := range []Fingerprint{keystores("pw-2").Fingerprint(digestWith("other")), keystores("pw").Fingerprint(nil)} {
		if got := withKey.Differences(other, false); len(got) != 0 {
			t.Errorf("secrets compared without the key: differences %q", got)
		}
	}

	// The coarsest form, kept when a record cannot be stored otherwise, compares with
	// a full fingerprint.
	small := func(enabled string) Fingerprint {
		return mustDecodeLine(t, `{"id":"s","type":"proxy.mtls.update","project":"P","params":{"apiProxyName":"P","keyStoreName":"ks","enabled":`+enabled+`}}`).Fingerprint(digestWith("k"))
	}
	coarse := small("false").Coarsest()
	if len(coarse) > 3 {
		t.Errorf("the coarsest fingerprint has %d entries", len(coarse))
	}
	if got := coarse.Differences(small("false"), true); len(got) != 0 {
		t.Errorf("the same params differ from their coarsest fingerprint at %q", got)
	}
	if got := small("true").Differences(coarse, true); !slices.Equal(got, []string{"params"}) {
		t.Errorf("other params against the coarsest fingerprint: differences %q, want [params]", got)
	}
}
