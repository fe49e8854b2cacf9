package keystores

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testNow is the "now" every test checks against, so that certificate dates
// and expected messages are reproducible.
var testNow = time.Date(2026, time.June, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

type keyAlgorithm string

const (
	algRSA   keyAlgorithm = "RSA"
	algECDSA keyAlgorithm = "ECDSA"
)

var keyAlgorithms = []keyAlgorithm{algRSA, algECDSA}

type validity struct{ notBefore, notAfter time.Time }

var currentlyValid = validity{testNow.Add(-day), testNow.Add(365 * day)}

// testKeys caches keys by algorithm and role: RSA generation dominates the
// test run time otherwise.
var testKeys sync.Map

func testKey(t *testing.T, alg keyAlgorithm, role string) crypto.Signer {
	t.Helper()
	cacheKey := string(alg) + "/" + role
	if key, ok := testKeys.Load(cacheKey); ok {
		return key.(crypto.Signer)
	}
	var key crypto.Signer
	var err error
	switch alg {
	case algRSA:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case algECDSA:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatalf("generate %s key: %v", alg, err)
	}
	actual, _ := testKeys.LoadOrStore(cacheKey, key)
	return actual.(crypto.Signer)
}

var lastSerial atomic.Int64

type certSpec struct {
	commonName string
	isCA       bool
	validity   validity
	key        crypto.Signer
	issuer     *x509.Certificate // nil: self-signed
	issuerKey  crypto.Signer
}

func issueCertificate(t *testing.T, spec certSpec) *x509.Certificate {
	t.Helper()
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(lastSerial.Add(1)),
		Subject:               pkix.Name{CommonName: spec.commonName, Organization: []string{"apiops test"}},
		NotBefore:             spec.validity.notBefore,
		NotAfter:              spec.validity.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
	}
	if spec.isCA {
		template.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		template.KeyUsage = x509.KeyUsageDigitalSignature
		template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		template.DNSNames = []string{spec.commonName}
	}
	issuer, issuerKey := template, spec.key
	if spec.issuer != nil {
		issuer, issuerKey = spec.issuer, spec.issuerKey
	}
	der, err := x509.CreateCertificate(rand.Reader, template, issuer, spec.key.Public(), issuerKey)
	if err != nil {
		t.Fatalf("create certificate %s: %v", spec.commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate %s: %v", spec.commonName, err)
	}
	return cert
}

// testPKI is a root CA, an intermediate CA and a leaf issued by the latter.
type testPKI struct {
	root, intermediate, leaf          *x509.Certificate
	rootKey, intermediateKey, leafKey crypto.Signer
}

type pkiSpec struct {
	root, intermediate, leaf validity
}

type pkiOption func(*pkiSpec)

func withLeafValidity(v validity) pkiOption         { return func(s *pkiSpec) { s.leaf = v } }
func withIntermediateValidity(v validity) pkiOption { return func(s *pkiSpec) { s.intermediate = v } }
func withRootValidity(v validity) pkiOption         { return func(s *pkiSpec) { s.root = v } }

const (
	rootCN         = "Test Root CA"
	intermediateCN = "Test Intermediate CA"
	leafCN         = "gateway.example.test"
)

func newTestPKI(t *testing.T, alg keyAlgorithm, options ...pkiOption) testPKI {
	t.Helper()
	spec := pkiSpec{root: currentlyValid, intermediate: currentlyValid, leaf: currentlyValid}
	for _, option := range options {
		option(&spec)
	}
	p := testPKI{
		rootKey:         testKey(t, alg, "root"),
		intermediateKey: testKey(t, alg, "intermediate"),
		leafKey:         testKey(t, alg, "leaf"),
	}
	p.root = issueCertificate(t, certSpec{commonName: rootCN, isCA: true, validity: spec.root, key: p.rootKey})
	p.intermediate = issueCertificate(t, certSpec{commonName: intermediateCN, isCA: true, validity: spec.intermediate,
		key: p.intermediateKey, issuer: p.root, issuerKey: p.rootKey})
	p.leaf = issueCertificate(t, certSpec{commonName: leafCN, validity: spec.leaf,
		key: p.leafKey, issuer: p.intermediate, issuerKey: p.intermediateKey})
	return p
}

// chainPEM is the usual full chain: leaf, intermediate, root.
func (p testPKI) chainPEM() []byte { return certificatesPEM(p.leaf, p.intermediate, p.root) }

func (p testPKI) keyPEM(t *testing.T) []byte { return privateKeyPEM(t, p.leafKey, "PKCS8") }

func (p testPKI) keyStoreInputs(t *testing.T) Inputs {
	return Inputs{Chain: p.chainPEM(), Key: p.keyPEM(t)}
}

func certificatesPEM(certs ...*x509.Certificate) []byte {
	var out bytes.Buffer
	for _, cert := range certs {
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	}
	return out.Bytes()
}

func privateKeyPEM(t *testing.T, key crypto.Signer, format string) []byte {
	t.Helper()
	block := &pem.Block{}
	var err error
	switch format {
	case "PKCS8":
		block.Type = "PRIVATE KEY"
		block.Bytes, err = x509.MarshalPKCS8PrivateKey(key)
	case "PKCS1":
		block.Type = "RSA PRIVATE KEY"
		block.Bytes = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	case "SEC1":
		block.Type = "EC PRIVATE KEY"
		block.Bytes, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	default:
		t.Fatalf("unknown key format %q", format)
	}
	if err != nil {
		t.Fatalf("marshal %s key: %v", format, err)
	}
	return pem.EncodeToMemory(block)
}

// reencodeTruncated keeps the PEM framing intact but cuts the DER in half,
// which is what a copy-and-paste accident produces.
func reencodeTruncated(t *testing.T, data []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("reencodeTruncated: no PEM block")
	}
	block.Bytes = block.Bytes[:len(block.Bytes)/2]
	return pem.EncodeToMemory(block)
}
