package simulator

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"slices"
)

// Seed is the state a simulator starts from. It is plain data so that tests can
// build one inline and demos can load one from a file (see LoadSeed).
type Seed struct {
	// Token is a static bearer token the simulator accepts, like a Personal API
	// Access Token that never expires; an empty token accepts nothing, so a
	// forgotten token fails loudly instead of opening the API.
	Token string `json:"token"`
	// Clients maps a client id (an Apinizer username) to its secret, for tokens
	// issued by POST /apiops/auth/token.
	Clients  map[string]string      `json:"clients,omitempty"`
	Projects map[string]ProjectSeed `json:"projects"`
}

// ProjectSeed is one APIOps project. Keystores, keys and certificates of the
// project named "admin" can be assigned to credentials of every project, as in
// APIOps.
type ProjectSeed struct {
	// Environments are listed in deployment results in this order.
	Environments []string `json:"environments"`
	// Credentials maps a username to what is assigned to it.
	Credentials map[string]CredentialState `json:"credentials"`
	// Keystores names the keystores that exist. Their content is generated, on
	// first read: for every environment of the project, a PKCS12 file holding a
	// self-signed ECDSA P-256 certificate with CN=<name> and its key, or, for a
	// name containing "trust", the certificate alone as a trusted entry.
	Keystores []string `json:"keystores"`
	// Keys maps a key name to its type: PRIVATE_KEY, PUBLIC_KEY, SECRET_KEY or
	// CERTIFICATE. A credential's privateKey, publicKey and secretKey must each
	// name a key of the matching type.
	Keys map[string]string `json:"keys"`
	// Certificates names the certificates that exist, which a credential's
	// certificate may name. Each gets a generated self-signed PEM certificate
	// with CN=<name> for every environment of the project, on first read.
	Certificates []string `json:"certificates,omitempty"`
	// ExpiresInDays gives a seeded keystore's or certificate's certificate a
	// NotAfter that many days after the simulator was created (default 365;
	// negative means it has already expired). NotBefore is 30 days before the
	// creation, or a year before NotAfter when that is earlier.
	ExpiresInDays map[string]int `json:"expiresInDays,omitempty"`
	// KeystorePasswords gives a seeded keystore's files their password
	// (default "changeit").
	KeystorePasswords map[string]string `json:"keystorePasswords,omitempty"`
	// APIProxies maps a proxy name to its current mTLS settings.
	APIProxies map[string]MTLSSettings `json:"apiProxies"`
}

// CredentialState is what is assigned to a credential, by name; empty means
// nothing is assigned. Names are not rewritten when a keystore is renamed or
// deleted, so tests see exactly what was assigned.
type CredentialState struct {
	Keystore    string `json:"keystore,omitempty"`
	Truststore  string `json:"truststore,omitempty"`
	PrivateKey  string `json:"privateKey,omitempty"`
	PublicKey   string `json:"publicKey,omitempty"`
	SecretKey   string `json:"secretKey,omitempty"`
	Certificate string `json:"certificate,omitempty"`
}

// MTLSSettings are an API proxy's mTLS settings under APIOps's field names, so a
// seed file reads like the PATCH body that changes them.
//
// Servers disagree on how the PATCH names a keystore (by id in the docs
// dialect, by name in the openapi and mixed ones), so the simulator records
// both where it can resolve them: whichever way a test's client sent it, the
// test can check which keystore the proxy uses.
type MTLSSettings struct {
	Enabled               bool     `json:"enabled"`
	KeyStoreID            string   `json:"keyStoreId,omitempty"`
	TrustStoreID          string   `json:"trustStoreId,omitempty"`
	SupportedProtocolList []string `json:"supportedProtocolList,omitempty"`
	HostnameVerifierType  string   `json:"hostnameVerifierType,omitempty"`
	KeyStoreName          string   `json:"keyStoreName,omitempty"`
	TrustStoreName        string   `json:"trustStoreName,omitempty"`
	DisableSSLValidation  bool     `json:"disableSslValidation,omitempty"`
	// Type is the proxy's type; "AI" proxies refuse the mTLS PATCH. It is set
	// by the seed only.
	Type string `json:"type,omitempty"`
}

var keyTypes = []string{"PRIVATE_KEY", "PUBLIC_KEY", "SECRET_KEY", "CERTIFICATE"}

// LoadSeed reads a seed file. Unknown fields, unknown key types and clients
// without a secret are errors, because a typo in a seed would otherwise show up
// as a puzzling 400 or 401 much later.
func LoadSeed(path string) (Seed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Seed{}, fmt.Errorf("load seed: %w", err)
	}
	return parseSeed(data, path)
}

// demoSeed is the seed the demo and apiops-sim start with when given none (also at
// testdata/apiops-seed.json): built in, so that they run from any directory.
//
//go:embed seed.json
var demoSeed []byte

// DemoSeed returns the built-in seed: project MyProject with a few credentials,
// keystores and API proxies, token "sim-token".
func DemoSeed() Seed {
	seed, err := parseSeed(demoSeed, "built-in seed")
	if err != nil {
		panic(err) // a test of the package reads it
	}
	return seed
}

func parseSeed(data []byte, path string) (Seed, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var seed Seed
	if err := dec.Decode(&seed); err != nil {
		return Seed{}, fmt.Errorf("load seed %s: %w", path, err)
	}
	for id, secret := range seed.Clients {
		if id == "" || secret == "" {
			return Seed{}, fmt.Errorf("load seed %s: client %q: want a non-empty client id and secret", path, id)
		}
	}
	for projectName, p := range seed.Projects {
		for keyName, keyType := range p.Keys {
			if !slices.Contains(keyTypes, keyType) {
				return Seed{}, fmt.Errorf("load seed %s: project %s: key %s: unknown type %q (want one of %v)",
					path, projectName, keyName, keyType, keyTypes)
			}
		}
		for name := range p.ExpiresInDays {
			if !slices.Contains(p.Keystores, name) && !slices.Contains(p.Certificates, name) {
				return Seed{}, fmt.Errorf("load seed %s: project %s: expiresInDays names %s, which is neither a keystore nor a certificate of the project",
					path, projectName, name)
			}
		}
		for name, password := range p.KeystorePasswords {
			if !slices.Contains(p.Keystores, name) || password == "" {
				return Seed{}, fmt.Errorf("load seed %s: project %s: keystorePasswords[%s]: want a non-empty password of a keystore of the project",
					path, projectName, name)
			}
		}
	}
	return seed, nil
}
