package keystores

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

var testPassword = []byte("correct-horse-battery-staple")

const testAlias = "gateway-tls"

func TestBuildKeyStoreRoundTrip(t *testing.T) {
	for _, alg := range keyAlgorithms {
		pki := newTestPKI(t, alg)
		wantChain := []*x509.Certificate{pki.leaf, pki.intermediate, pki.root}
		for _, format := range []string{"PKCS8", nativeKeyFormat(alg)} {
			in := Inputs{Chain: pki.chainPEM(), Key: privateKeyPEM(t, pki.leafKey, format)}
			name := fmt.Sprintf("%s/%s", alg, format)

			t.Run(name+"/PKCS12", func(t *testing.T) {
				pfx := mustBuild(t, in, KindPKCS12)
				key, leaf, cas, err := pkcs12.DecodeChain(pfx, string(testPassword))
				if err != nil {
					t.Fatalf("DecodeChain: %v", err)
				}
				assertSameKey(t, key, pki.leafKey)
				assertSameChain(t, append([]*x509.Certificate{leaf}, cas...), wantChain)
			})

			t.Run(name+"/JKS", func(t *testing.T) {
				ks := mustLoadJKS(t, mustBuild(t, in, KindJKS))
				if got := ks.Aliases(); len(got) != 1 || got[0] != testAlias {
					t.Fatalf("JKS aliases = %q, want [%q]", got, testAlias)
				}
				entry, err := ks.GetPrivateKeyEntry(testAlias, testPassword)
				if err != nil {
					t.Fatalf("GetPrivateKeyEntry: %v", err)
				}
				key, err := x509.ParsePKCS8PrivateKey(entry.PrivateKey)
				if err != nil {
					t.Fatalf("JKS key is not PKCS#8: %v", err)
				}
				assertSameKey(t, key, pki.leafKey)
				assertSameChain(t, parseJKSCertificates(t, entry.CertificateChain), wantChain)
			})
		}
	}
}

func TestBuildTrustStoreRoundTrip(t *testing.T) {
	pki := newTestPKI(t, algRSA)
	// A renewed root with the same subject: the rotation case in which
	// subject-derived aliases would collide.
	renewedRoot := issueCertificate(t, certSpec{commonName: rootCN, isCA: true, validity: currentlyValid, key: testKey(t, algECDSA, "renewed-root")})
	wantCAs := []*x509.Certificate{pki.root, pki.intermediate, renewedRoot}
	in := Inputs{CAs: certificatesPEM(wantCAs...)}
	wantAliases := []string{testAlias + "-1", testAlias + "-2", testAlias + "-3"}

	t.Run("PKCS12", func(t *testing.T) {
		certs, err := pkcs12.DecodeTrustStore(mustBuild(t, in, KindPKCS12), string(testPassword))
		if err != nil {
			t.Fatalf("DecodeTrustStore: %v", err)
		}
		assertSameChain(t, certs, wantCAs)
	})

	t.Run("JKS", func(t *testing.T) {
		ks := mustLoadJKS(t, mustBuild(t, in, KindJKS))
		if got := ks.Aliases(); strings.Join(got, ",") != strings.Join(wantAliases, ",") {
			t.Fatalf("JKS aliases = %q, want %q", got, wantAliases)
		}
		var got []*x509.Certificate
		for _, alias := range wantAliases {
			entry, err := ks.GetTrustedCertificateEntry(alias)
			if err != nil {
				t.Fatalf("GetTrustedCertificateEntry(%q): %v", alias, err)
			}
			got = append(got, parseJKSCertificates(t, []keystore.Certificate{entry.Certificate})...)
		}
		assertSameChain(t, got, wantCAs)
	})
}

func TestBuildAcceptsKindInAnyCase(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	for _, kind := range []string{"pkcs12", "jks", "Jks"} {
		if _, err := Build(pki.keyStoreInputs(t), kind, testPassword, testAlias); err != nil {
			t.Errorf("Build(kind %q) error = %v", kind, err)
		}
	}
}

func TestBuildRefusesBadArgumentsAndInputs(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	good := pki.keyStoreInputs(t)
	cases := []struct {
		name     string
		in       Inputs
		kind     string
		password []byte
		alias    string
		wantErr  error
	}{
		{"unknown kind", good, "PEM", testPassword, testAlias, ErrUnknownKind},
		{"empty password", good, KindPKCS12, nil, testAlias, ErrInvalidPassword},
		{"non-ASCII JKS password", good, KindJKS, []byte("pässwort"), testAlias, ErrInvalidPassword},
		{"empty alias", good, KindJKS, testPassword, " ", ErrInvalidAlias},
		{"keystore and truststore at once", Inputs{Chain: good.Chain, Key: good.Key, CAs: certificatesPEM(pki.root)}, KindJKS, testPassword, testAlias, ErrMixedInputs},
		{"mismatched key", Inputs{Chain: good.Chain, Key: privateKeyPEM(t, pki.rootKey, "PKCS8")}, KindPKCS12, testPassword, testAlias, ErrKeyMismatch},
		{"chain out of order", Inputs{Chain: certificatesPEM(pki.leaf, pki.root, pki.intermediate), Key: good.Key}, KindJKS, testPassword, testAlias, ErrChainOrder},
		{"unparsable chain", Inputs{Chain: []byte(damagedCertificatePEM), Key: good.Key}, KindPKCS12, testPassword, testAlias, ErrUnparsable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Build(tc.in, tc.kind, tc.password, tc.alias)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Build() error = %v, want errors.Is %v", err, tc.wantErr)
			}
			if out != nil {
				t.Errorf("Build() returned %d bytes along with an error", len(out))
			}
		})
	}
}

// Build leaves dates to Check: an operator may deliberately stage a
// certificate that becomes valid tomorrow.
func TestBuildIgnoresValidityDates(t *testing.T) {
	pki := newTestPKI(t, algECDSA, withLeafValidity(validity{testNow.Add(-400 * day), testNow.Add(-day)}))
	if _, err := Build(pki.keyStoreInputs(t), KindPKCS12, testPassword, testAlias); err != nil {
		t.Fatalf("Build() error = %v", err)
	}
}

func TestBuildDoesNotModifyPassword(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	password := []byte("s3cret-Password")
	for _, kind := range []string{KindPKCS12, KindJKS} {
		if _, err := Build(pki.keyStoreInputs(t), kind, password, testAlias); err != nil {
			t.Fatalf("Build(%s) error = %v", kind, err)
		}
		if string(password) != "s3cret-Password" {
			t.Fatalf("Build(%s) modified the caller's password buffer", kind)
		}
	}
}

func mustBuild(t *testing.T, in Inputs, kind string) []byte {
	t.Helper()
	out, err := Build(in, kind, testPassword, testAlias)
	if err != nil {
		t.Fatalf("Build(%s) error = %v", kind, err)
	}
	if len(out) == 0 {
		t.Fatalf("Build(%s) returned no bytes", kind)
	}
	return out
}

func mustLoadJKS(t *testing.T, data []byte) keystore.KeyStore {
	t.Helper()
	ks := keystore.New(keystore.WithOrderedAliases())
	if err := ks.Load(bytes.NewReader(data), testPassword); err != nil {
		t.Fatalf("load JKS: %v", err)
	}
	return ks
}

func parseJKSCertificates(t *testing.T, certs []keystore.Certificate) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for i, c := range certs {
		if c.Type != "X509" {
			t.Fatalf("JKS certificate %d type = %q, want X509", i+1, c.Type)
		}
		cert, err := x509.ParseCertificate(c.Content)
		if err != nil {
			t.Fatalf("JKS certificate %d: %v", i+1, err)
		}
		out = append(out, cert)
	}
	return out
}

func assertSameKey(t *testing.T, got any, want crypto.Signer) {
	t.Helper()
	withEqual, ok := got.(interface{ Equal(crypto.PrivateKey) bool })
	if !ok || !withEqual.Equal(want) {
		t.Fatalf("decoded private key (%T) differs from the input key (%T)", got, want)
	}
}

func assertSameChain(t *testing.T, got, want []*x509.Certificate) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d certificates, want %d", len(got), len(want))
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("certificate %d = %s, want %s", i+1, got[i].Subject, want[i].Subject)
		}
	}
}
