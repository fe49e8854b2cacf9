// Package keystorestest makes small, real keystore files for tests: since commands'
// keystores are opened before they are sent, a test's file must open with its
// password. Each file holds a fresh self-signed ECDSA P-256 certificate, with its key
// (a keystore) or without (a truststore), so that no two files are alike.
package keystorestest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"time"

	"github.com/apiops-worker/apiops-worker/keystores"
)

// Password protects the files whose Spec names none. Test fixtures only.
const Password = "keystorestest-pw-4e1d"

// Spec describes a file; the zero Spec is a PKCS12 keystore protected by Password,
// valid from an hour ago for ten years.
type Spec struct {
	// Kind is keystores.KindPKCS12 (the default) or keystores.KindJKS.
	Kind string
	// Password defaults to Password.
	Password string
	// TrustStore leaves the key out: the certificate is a trusted entry.
	TrustStore bool
	// NotBefore and NotAfter are the certificate's validity; zero means the default.
	NotBefore, NotAfter time.Time
}

// File returns the keystore file. It panics on failure, which would be a bug here.
func File(spec Spec) []byte {
	if spec.Kind == "" {
		spec.Kind = keystores.KindPKCS12
	}
	if spec.Password == "" {
		spec.Password = Password
	}
	if spec.NotBefore.IsZero() {
		spec.NotBefore = time.Now().Add(-time.Hour)
	}
	if spec.NotAfter.IsZero() {
		spec.NotAfter = spec.NotBefore.Add(10 * 365 * 24 * time.Hour)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic("keystorestest: " + err.Error())
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		panic("keystorestest: " + err.Error())
	}
	template := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "keystorestest", Organization: []string{"apiops test"}},
		NotBefore: spec.NotBefore, NotAfter: spec.NotAfter,
		BasicConstraintsValid: true, IsCA: spec.TrustStore,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		panic("keystorestest: " + err.Error())
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	in := keystores.Inputs{CAs: certPEM}
	if !spec.TrustStore {
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			panic("keystorestest: " + err.Error())
		}
		in = keystores.Inputs{Chain: certPEM, Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}
	}
	file, err := keystores.Build(in, spec.Kind, []byte(spec.Password), "test")
	if err != nil {
		panic("keystorestest: " + err.Error())
	}
	return file
}

// Base64 returns the file in standard base64, as a command's "file" carries it.
func Base64(spec Spec) string { return base64.StdEncoding.EncodeToString(File(spec)) }
