package simulator

import (
	"errors"
	"fmt"
	"time"

	"github.com/apiops-worker/apiops-worker/keystores"
)

// keystoreRefusal is why APIOps would refuse to store file as a keyStoreType
// keystore opened with password as of now, or "" when it takes it. APIOps loads the
// file with Java's KeyStore, so the texts are Java's where Java has them: a wrong
// password, the other format, not a keystore, and a certificate outside its validity
// period (CertificateExpiredException, CertificateNotYetValidException). Whether the
// file holds a key matters only where the keystore is assigned (keystoreLacksKey).
func keystoreRefusal(file []byte, keyStoreType, password string, now time.Time) string {
	c, err := keystores.Open(file, keyStoreType, []byte(password))
	switch {
	case errors.Is(err, keystores.ErrWrongPassword):
		return "keystore password was incorrect"
	case errors.Is(err, keystores.ErrWrongType):
		return fmt.Sprintf("Invalid keystore format: not a %s keystore", keyStoreType)
	case err != nil && !errors.Is(err, keystores.ErrKeyMismatch):
		return "Invalid keystore format"
	}
	for i, cert := range c.Certificates {
		switch {
		case now.Before(cert.NotBefore):
			return fmt.Sprintf("certificate %d (%s) is not yet valid: NotBefore: %s", i+1, cert.Subject, cert.NotBefore.UTC().Format(time.RFC3339))
		case now.After(cert.NotAfter):
			return fmt.Sprintf("certificate %d (%s) has expired: NotAfter: %s", i+1, cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return ""
}

// keystoreLacksKey names the first environment whose file holds no private key, or
// "" when every file has one. A keystore assigned where a key is needed, a
// credential's keystore or an API proxy's mTLS keystore, must hold one; a truststore
// need not. A keystore from the seed gets its content first, so a seeded truststore
// is refused as a keystore. p is the keystore's project; the caller holds s.mu.
func (p *project) keystoreLacksKey(ks *keystore) string {
	if ks.lacksKey != nil {
		return *ks.lacksKey
	}
	p.keystoreContent(ks)
	env := ""
	for _, e := range ks.Environments {
		c, err := keystores.Open(e.File, e.KeyStoreType, []byte(e.Password))
		if err == nil && c.LacksPrivateKey() {
			env = e.EnvironmentName
			break
		}
	}
	ks.lacksKey = &env
	return env
}

// refuseKeylessKeystore is the 400 for assigning ks, of project p, where a private
// key is needed (as what, e.g. "the keystore of a credential"), or nil when it holds
// one.
func (p *project) refuseKeylessKeystore(ks *keystore, as string) *apiError {
	if ks == nil {
		return nil
	}
	if env := p.keystoreLacksKey(ks); env != "" {
		return badRequest("Keystore (name: %s) holds no private key for environment %s: it cannot be %s (assign it as a truststore)", ks.Name, env, as)
	}
	return nil
}

// refuseKeylessMTLSKeystore is refuseKeylessKeystore for an API proxy's mTLS store
// labelled label: its KeyStore needs a private key, its TrustStore does not.
func (p *project) refuseKeylessMTLSKeystore(label string, ks *keystore) *apiError {
	if label != "KeyStore" {
		return nil
	}
	return p.refuseKeylessKeystore(ks, "an API proxy's mTLS keystore")
}
