package keystores

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

// A rotation built again must be the same command: same inputs, same bytes; and the
// file still opens with its password.
func TestBuildReproducible(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	for _, tc := range []struct {
		name string
		in   Inputs
	}{
		{"keystore", pki.keyStoreInputs(t)},
		{"truststore", Inputs{CAs: certificatesPEM(pki.root)}},
	} {
		for _, kind := range []string{KindPKCS12, KindJKS} {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				first, err := BuildReproducible(tc.in, kind, testPassword, testAlias)
				if err != nil {
					t.Fatal(err)
				}
				again, _ := BuildReproducible(tc.in, kind, testPassword, testAlias)
				if !bytes.Equal(first, again) {
					t.Error("built twice, the bytes differ")
				}
				other, _ := BuildReproducible(tc.in, kind, []byte("another-password"), testAlias)
				if bytes.Equal(first, other) {
					t.Error("another password, the same bytes")
				}
				if random := mustBuild(t, tc.in, kind); bytes.Equal(first, random) {
					t.Error("Build is reproducible too: its salts are not random")
				}
				var openErr error
				switch {
				case kind == KindJKS:
					openErr = keystore.New().Load(bytes.NewReader(first), testPassword)
				case tc.name == "keystore":
					_, _, _, openErr = pkcs12.DecodeChain(first, string(testPassword))
				default:
					_, openErr = pkcs12.DecodeTrustStore(first, string(testPassword))
				}
				if openErr != nil {
					t.Errorf("does not open: %v", openErr)
				}
			})
		}
	}
}

func TestDerivePassword(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	in := pki.keyStoreInputs(t)
	a, err := DerivePassword(in, "P/trust-2027")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := DerivePassword(in, "P/trust-2027")
	other, _ := DerivePassword(in, "P/trust-2028")
	otherKey, _ := DerivePassword(Inputs{Chain: certificatesPEM(pki.intermediate, pki.root), Key: privateKeyPEM(t, pki.intermediateKey, "PKCS8")}, "P/trust-2027")
	switch {
	case len(a) != GeneratedPasswordLength || strings.Trim(string(a), PasswordAlphabet) != "":
		t.Errorf("password %d characters, outside the alphabet", len(a))
	case !bytes.Equal(a, again):
		t.Error("derived twice, two passwords")
	case bytes.Equal(a, other) || bytes.Equal(a, otherKey):
		t.Error("another context or key, the same password")
	}
}

func TestReadPasswordFileTakesOneLine(t *testing.T) {
	dir := t.TempDir()
	for content, wantErr := range map[string]bool{"secret\n": false, "secret\r\n": false, "secret": false,
		"secret\nsecond line\n": true, "first\rsecond": true, "\n": true} {
		path := filepath.Join(dir, "pw")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		pw, err := ReadPasswordFile(path)
		if (err != nil) != wantErr || err == nil && string(pw) != "secret" {
			t.Errorf("%q: %q, %v", content, pw, err)
		}
		if err != nil && (!errors.Is(err, ErrInvalidPassword) || strings.Contains(err.Error(), "second")) {
			t.Errorf("%q: %v", content, err)
		}
	}
}

// A chain that stops at an intermediate is accepted with a warning naming the issuer
// to add; one that ends at its root is not warned about.
func TestCheckWarnsOfAMissingIntermediate(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	warnings, err := Check(Inputs{Chain: certificatesPEM(pki.leaf), Key: pki.keyPEM(t)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], intermediateCN) {
		t.Errorf("warnings %q, want one naming %q", warnings, intermediateCN)
	}
	if warnings, _ := Check(pki.keyStoreInputs(t), time.Now()); len(warnings) != 0 {
		t.Errorf("a full chain: warnings %q", warnings)
	}
}

// TestDerivePasswordRefusesTruststores: a truststore holds public certificates only;
// a password derived from them would be known to whoever has them.
func TestDerivePasswordRefusesTruststores(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	if _, err := DerivePassword(Inputs{CAs: certificatesPEM(pki.root)}, "P/trust-2027"); err == nil {
		t.Fatal("a password derived from public certificates")
	}
}
