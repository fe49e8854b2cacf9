package simulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

const (
	// defaultExpiresInDays is how long a seeded certificate is valid after the
	// simulator was created, unless the seed's expiresInDays says otherwise.
	defaultExpiresInDays = 365
	// defaultKeystorePassword opens a seeded keystore's files, unless the
	// seed's keystorePasswords says otherwise; it is Java's cacerts password.
	defaultKeystorePassword = "changeit"
	// validFor is how long before the simulator's creation a seeded
	// certificate became valid.
	validFor = 30 * 24 * time.Hour
)

// seedContent makes the content of a project's seeded keystores and
// certificates. Tests create many simulators and read few of them, so content
// is made on first read (an ECDSA key and a PKCS12 file cost about a
// millisecond each) and then kept.
type seedContent struct {
	// created is when the simulator was created, from which validity is counted.
	created       time.Time
	expiresInDays map[string]int
	passwords     map[string]string
}

// validity is the validity period of the seeded item name's certificate.
// NotBefore must precede NotAfter, so an item expired for longer than 30 days
// became valid a year before it expired instead.
func (c seedContent) validity(name string) (notBefore, notAfter time.Time) {
	days, ok := c.expiresInDays[name]
	if !ok {
		days = defaultExpiresInDays
	}
	notAfter = c.created.Add(time.Duration(days) * 24 * time.Hour)
	notBefore = c.created.Add(-validFor)
	if !notBefore.Before(notAfter) {
		notBefore = notAfter.AddDate(-1, 0, 0)
	}
	return notBefore, notAfter
}

// password is the password of the seeded keystore name's files.
func (c seedContent) password(name string) string {
	if pw, ok := c.passwords[name]; ok {
		return pw
	}
	return defaultKeystorePassword
}

// selfSigned makes a self-signed certificate with CN=name and its key. It is
// a CA, so that it serves as a trust anchor as well as a client certificate.
func (c seedContent) selfSigned(name string) (*ecdsa.PrivateKey, *x509.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		panic(fmt.Sprintf("simulator: generate a key for %s: %v", name, err))
	}
	serial, err := cryptorand.Int(cryptorand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("simulator: generate a serial number for %s: %v", name, err))
	}
	notBefore, notAfter := c.validity(name)
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(cryptorand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		panic(fmt.Sprintf("simulator: create a certificate for %s: %v", name, err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(fmt.Sprintf("simulator: parse the certificate of %s: %v", name, err))
	}
	return key, cert
}

// isTrustStoreName tells whether a seeded keystore is a truststore, whose
// file holds a trusted certificate and no key.
func isTrustStoreName(name string) bool { return strings.Contains(name, "trust") }

// keystoreFile makes the PKCS12 file of the seeded keystore name.
func (c seedContent) keystoreFile(name string) []byte {
	key, cert := c.selfSigned(name)
	var file []byte
	var err error
	if isTrustStoreName(name) {
		file, err = pkcs12.Modern.EncodeTrustStore([]*x509.Certificate{cert}, c.password(name))
	} else {
		file, err = pkcs12.Modern.Encode(key, cert, nil, c.password(name))
	}
	if err != nil {
		panic(fmt.Sprintf("simulator: encode the keystore %s: %v", name, err))
	}
	return file
}

// certificatePEM makes the PEM certificate of the seeded certificate name.
func (c seedContent) certificatePEM(name string) string {
	_, cert := c.selfSigned(name)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
}

// keystoreContent gives a keystore from the seed its generated content, the
// same file for every environment of the project, unless it has it already.
// The caller holds s.mu.
func (p *project) keystoreContent(ks *keystore) {
	if ks.seeded == "" {
		return
	}
	file := p.content.keystoreFile(ks.seeded)
	ks.Environments = make([]KeystoreEnvironment, len(p.environments))
	for i, env := range p.environments {
		ks.Environments[i] = KeystoreEnvironment{
			EnvironmentName: env,
			File:            file,
			Password:        p.content.password(ks.seeded),
			Alias:           ks.seeded,
			KeyStoreType:    "PKCS12",
		}
	}
	ks.seeded = ""
}

// certificateContent gives a certificate from the seed its generated content,
// the same for every environment of the project, unless it has it already.
// The caller holds s.mu.
func (p *project) certificateContent(c *certificate) {
	if c.seeded == "" {
		return
	}
	content := p.content.certificatePEM(c.seeded)
	c.Environments = make([]CertificateEnvironment, len(p.environments))
	for i, env := range p.environments {
		c.Environments[i] = CertificateEnvironment{EnvironmentName: env, Content: content, Alias: c.seeded}
	}
	c.seeded = ""
}
