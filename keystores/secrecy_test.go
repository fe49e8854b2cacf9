package keystores

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
)

// TestErrorsNeverContainKeyMaterial feeds every broken input, plus Build's
// failure modes, and checks that no message echoes PEM text, key bytes (raw,
// hex or base64) or the password.
func TestErrorsNeverContainKeyMaterial(t *testing.T) {
	for _, alg := range keyAlgorithms {
		pki := newTestPKI(t, alg)
		secrets := keyMaterialFragments(t, pki.leafKey, testKey(t, alg, "unrelated"), pki.rootKey)
		secrets = append(secrets, string(testPassword), "pässwort")

		var messages []string
		for _, tc := range problemCases(t, alg) {
			if _, err := Check(tc.in, testNow); err != nil {
				messages = append(messages, err.Error())
			}
			for _, kind := range []string{KindPKCS12, KindJKS} {
				if _, err := Build(tc.in, kind, testPassword, testAlias); err != nil {
					messages = append(messages, err.Error())
				}
			}
		}
		if _, err := Build(pki.keyStoreInputs(t), KindJKS, []byte("pässwort"), testAlias); err != nil {
			messages = append(messages, err.Error())
		}
		if len(messages) < 20 {
			t.Fatalf("%s: only %d error messages collected; the test lost its inputs", alg, len(messages))
		}

		for _, msg := range messages {
			if strings.Contains(msg, "-----") {
				t.Errorf("%s: error contains PEM framing: %q", alg, msg)
			}
			for _, secret := range secrets {
				if strings.Contains(msg, secret) {
					t.Errorf("%s: error contains secret fragment %q: %q", alg, secret, msg)
				}
			}
		}
	}
}

// keyMaterialFragments returns overlapping 12-byte windows of each key's
// PKCS#8 DER, as raw bytes and hex, plus every base64 line of its PEM, so
// that even a partial echo is caught.
func keyMaterialFragments(t *testing.T, keys ...crypto.Signer) []string {
	t.Helper()
	const window = 12
	var fragments []string
	for _, key := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+window <= len(der); i += window / 2 {
			fragments = append(fragments, string(der[i:i+window]), hex.EncodeToString(der[i:i+window]))
		}
		encoded := base64.StdEncoding.EncodeToString(der)
		for i := 0; i+16 <= len(encoded); i += 16 {
			fragments = append(fragments, encoded[i:i+16])
		}
		block := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		for _, line := range strings.Split(string(block), "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				fragments = append(fragments, line)
			}
		}
	}
	return fragments
}
