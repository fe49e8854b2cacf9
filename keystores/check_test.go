package keystores

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckAcceptsValidInputs(t *testing.T) {
	for _, alg := range keyAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			pki := newTestPKI(t, alg)
			cases := map[string]Inputs{
				"keystore":              pki.keyStoreInputs(t),
				"chain without root":    {Chain: certificatesPEM(pki.leaf, pki.intermediate), Key: pki.keyPEM(t)},
				"truststore only":       {CAs: certificatesPEM(pki.root, pki.intermediate)},
				"keystore anchored":     {Chain: certificatesPEM(pki.leaf, pki.intermediate), Key: pki.keyPEM(t), CAs: certificatesPEM(pki.root)},
				"text around blocks":    {Chain: append([]byte("Bag Attributes\n    friendlyName: gw\n"), pki.chainPEM()...), Key: pki.keyPEM(t)},
				"key in native format":  {Chain: pki.chainPEM(), Key: privateKeyPEM(t, pki.leafKey, nativeKeyFormat(alg))},
				"EC parameters skipped": {Chain: pki.chainPEM(), Key: withECParameters(t, alg, pki)},
			}
			for name, in := range cases {
				warnings, err := Check(in, testNow)
				if err != nil {
					t.Errorf("%s: Check() error = %v", name, err)
				}
				if len(warnings) != 0 {
					t.Errorf("%s: Check() warnings = %q, want none", name, warnings)
				}
			}
		})
	}
}

func nativeKeyFormat(alg keyAlgorithm) string {
	if alg == algRSA {
		return "PKCS1"
	}
	return "SEC1"
}

// withECParameters mimics `openssl ecparam -genkey`, which writes an
// EC PARAMETERS block before the key; for RSA it returns the plain key.
func withECParameters(t *testing.T, alg keyAlgorithm, pki testPKI) []byte {
	if alg != algECDSA {
		return pki.keyPEM(t)
	}
	// The OID of prime256v1, DER-encoded.
	params := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
	return append([]byte(params), privateKeyPEM(t, pki.leafKey, "SEC1")...)
}

const damagedCertificatePEM = "-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n"

// problemCase is one broken input and what its error must say.
type problemCase struct {
	name          string
	in            Inputs
	wantErr       error
	wantInMessage []string
}

func problemCases(t *testing.T, alg keyAlgorithm) []problemCase {
	pki := newTestPKI(t, alg)
	leafCNField := "CN=" + leafCN
	expiredLeaf := validity{testNow.Add(-400 * day), testNow.Add(-day)}
	futureIntermediate := validity{testNow.Add(day), testNow.Add(400 * day)}
	expired := newTestPKI(t, alg, withLeafValidity(expiredLeaf))
	notYetValid := newTestPKI(t, alg, withIntermediateValidity(futureIntermediate))
	expiredRoot := newTestPKI(t, alg, withRootValidity(expiredLeaf))
	truncatedKey := privateKeyPEM(t, pki.leafKey, "PKCS8")
	truncatedKey = reencodeTruncated(t, truncatedKey)

	return []problemCase{
		{
			name:          "chain is not PEM",
			in:            Inputs{Chain: []byte("this is not a certificate"), Key: pki.keyPEM(t)},
			wantErr:       ErrUnparsable,
			wantInMessage: []string{"chain:", "no PEM block found"},
		},
		{
			name:          "chain block 2 damaged",
			in:            Inputs{Chain: append(certificatesPEM(pki.leaf), damagedCertificatePEM+string(certificatesPEM(pki.root))...), Key: pki.keyPEM(t)},
			wantErr:       ErrUnparsable,
			wantInMessage: []string{"chain: PEM block 2", "damaged"},
		},
		{
			name:          "chain block holds a key",
			in:            Inputs{Chain: append(certificatesPEM(pki.leaf), pki.keyPEM(t)...), Key: pki.keyPEM(t)},
			wantErr:       ErrUnparsable,
			wantInMessage: []string{"chain: PEM block 2", `type "PRIVATE KEY", want CERTIFICATE`},
		},
		{
			name:          "CAs damaged",
			in:            Inputs{CAs: []byte(damagedCertificatePEM)},
			wantErr:       ErrUnparsable,
			wantInMessage: []string{"CAs: PEM block 1", "damaged"},
		},
		{
			name:          "key truncated",
			in:            Inputs{Chain: pki.chainPEM(), Key: truncatedKey},
			wantErr:       ErrUnparsable,
			wantInMessage: []string{"key: PEM block 1 (PRIVATE KEY)", "not a valid PKCS#8 private key"},
		},
		{
			name:          "key block type unsupported",
			in:            Inputs{Chain: pki.chainPEM(), Key: []byte(strings.Replace(string(pki.keyPEM(t)), "PRIVATE KEY", "DSA PRIVATE KEY", 2))},
			wantErr:       ErrUnparsable,
			wantInMessage: []string{"key: PEM block 1 (DSA PRIVATE KEY)", "unsupported block type"},
		},
		{
			name:          "key encrypted",
			in:            Inputs{Chain: pki.chainPEM(), Key: []byte(strings.Replace(string(pki.keyPEM(t)), "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", 2))},
			wantErr:       ErrEncryptedKey,
			wantInMessage: []string{"key: PEM block 1", "decrypt it first"},
		},
		{
			name:          "two keys",
			in:            Inputs{Chain: pki.chainPEM(), Key: append(pki.keyPEM(t), privateKeyPEM(t, pki.rootKey, "PKCS8")...)},
			wantErr:       ErrUnparsable,
			wantInMessage: []string{"want exactly one private key block, found 2"},
		},
		{
			name:          "key does not match leaf",
			in:            Inputs{Chain: pki.chainPEM(), Key: privateKeyPEM(t, testKey(t, alg, "unrelated"), "PKCS8")},
			wantErr:       ErrKeyMismatch,
			wantInMessage: []string{"key: private key does not match the leaf certificate", leafCNField},
		},
		{
			name:          "chain reversed",
			in:            Inputs{Chain: certificatesPEM(pki.root, pki.intermediate, pki.leaf), Key: pki.keyPEM(t)},
			wantErr:       ErrKeyMismatch,
			wantInMessage: []string{"it matches certificate 3", "the leaf must come first"},
		},
		{
			name:    "chain out of order",
			in:      Inputs{Chain: certificatesPEM(pki.leaf, pki.root, pki.intermediate), Key: pki.keyPEM(t)},
			wantErr: ErrChainOrder,
			wantInMessage: []string{
				"chain: certificate 1 (" + leafCNField, "is not signed by certificate 2 (CN=" + rootCN,
				"(it is signed by certificate 3)", "chain out of order",
			},
		},
		{
			name:          "intermediate missing",
			in:            Inputs{Chain: certificatesPEM(pki.leaf, pki.root), Key: pki.keyPEM(t)},
			wantErr:       ErrChainOrder,
			wantInMessage: []string{"certificate 1 (" + leafCNField, "is not signed by certificate 2"},
		},
		{
			name:    "leaf expired",
			in:      expired.keyStoreInputs(t),
			wantErr: ErrExpired,
			wantInMessage: []string{
				"chain: certificate 1 (" + leafCNField, "certificate has expired",
				formatTime(expiredLeaf.notBefore), formatTime(expiredLeaf.notAfter), formatTime(testNow),
			},
		},
		{
			name:    "intermediate not yet valid",
			in:      notYetValid.keyStoreInputs(t),
			wantErr: ErrNotYetValid,
			wantInMessage: []string{
				"chain: certificate 2 (CN=" + intermediateCN, "certificate is not yet valid",
				"valid from " + formatTime(futureIntermediate.notBefore),
			},
		},
		{
			name:          "CA expired",
			in:            Inputs{CAs: certificatesPEM(expiredRoot.root)},
			wantErr:       ErrExpired,
			wantInMessage: []string{"CAs: certificate 1 (CN=" + rootCN, "certificate has expired"},
		},
		{
			name:          "chain without key",
			in:            Inputs{Chain: pki.chainPEM()},
			wantErr:       ErrMissingInput,
			wantInMessage: []string{"key: missing input"},
		},
		{
			name:          "key without chain",
			in:            Inputs{Key: pki.keyPEM(t)},
			wantErr:       ErrMissingInput,
			wantInMessage: []string{"chain: missing input"},
		},
		{
			name:    "nothing",
			in:      Inputs{},
			wantErr: ErrNoInputs,
		},
	}
}

func TestCheckReportsEachProblemClearly(t *testing.T) {
	for _, alg := range keyAlgorithms {
		for _, tc := range problemCases(t, alg) {
			t.Run(string(alg)+"/"+tc.name, func(t *testing.T) {
				_, err := Check(tc.in, testNow)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Check() error = %v, want errors.Is %v", err, tc.wantErr)
				}
				for _, want := range tc.wantInMessage {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Check() error = %q, want it to contain %q", err, want)
					}
				}
			})
		}
	}
}

func TestCheckReportsAllProblemsAtOnce(t *testing.T) {
	pki := newTestPKI(t, algECDSA, withLeafValidity(validity{testNow.Add(-400 * day), testNow.Add(-day)}))
	in := Inputs{Chain: certificatesPEM(pki.leaf, pki.root), Key: privateKeyPEM(t, testKey(t, algECDSA, "unrelated"), "PKCS8")}
	_, err := Check(in, testNow)
	for _, want := range []error{ErrKeyMismatch, ErrChainOrder, ErrExpired} {
		if !errors.Is(err, want) {
			t.Errorf("Check() error = %v, want it to include %v", err, want)
		}
	}
}

func TestCheckWarnsWhenLeafExpiresWithin30Days(t *testing.T) {
	cases := []struct {
		name         string
		leafNotAfter validity
		wantWarning  string
	}{
		{"10 days left", validity{testNow.Add(-day), testNow.Add(10*day + time.Hour)}, "expires in 10 days"},
		{"hours left", validity{testNow.Add(-day), testNow.Add(3 * time.Hour)}, "expires in less than a day"},
		{"just inside window", validity{testNow.Add(-day), testNow.Add(30*day - time.Minute)}, "expires in 29 days"},
		{"just outside window", validity{testNow.Add(-day), testNow.Add(30 * day)}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pki := newTestPKI(t, algECDSA, withLeafValidity(tc.leafNotAfter))
			warnings, err := Check(pki.keyStoreInputs(t), testNow)
			if err != nil {
				t.Fatalf("Check() error = %v; expiring soon must not be an error", err)
			}
			if tc.wantWarning == "" {
				if len(warnings) != 0 {
					t.Fatalf("Check() warnings = %q, want none", warnings)
				}
				return
			}
			if len(warnings) != 1 {
				t.Fatalf("Check() warnings = %q, want exactly one", warnings)
			}
			for _, want := range []string{"chain: leaf certificate (CN=" + leafCN, tc.wantWarning, formatTime(tc.leafNotAfter.notAfter)} {
				if !strings.Contains(warnings[0], want) {
					t.Errorf("warning = %q, want it to contain %q", warnings[0], want)
				}
			}
		})
	}
}

func TestCheckWarnsAboutDoubtfulCAs(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	other := issueCertificate(t, certSpec{commonName: "Other Root", isCA: true, validity: currentlyValid, key: testKey(t, algECDSA, "other-root")})
	in := Inputs{
		Chain: certificatesPEM(pki.leaf, pki.intermediate),
		Key:   pki.keyPEM(t),
		CAs:   certificatesPEM(other, pki.leaf),
	}
	warnings, err := Check(in, testNow)
	if err != nil {
		t.Fatalf("Check() error = %v", err)
	}
	joined := strings.Join(warnings, "\n")
	for _, want := range []string{
		"chain: last certificate (CN=" + intermediateCN + ",O=apiops test) is neither one of the CAs nor issued by one of them",
		"CAs: certificate 2 (CN=" + leafCN + ",O=apiops test) is not a CA certificate",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings = %q, want one containing %q", warnings, want)
		}
	}
}
