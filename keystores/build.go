package keystores

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

// Build writes a keystore of the given kind (KindPKCS12 or KindJKS,
// case-insensitive) protected by password.
//
//   - With Chain and Key: a keystore holding one private-key entry with the
//     whole chain. In JKS the entry is named alias and the key is protected
//     by the same password as the store, which is what most gateways expect.
//     PKCS#12 output uses go-pkcs12's Modern encoder (AES-256, readable by
//     Java 12+ and OpenSSL 1.1.1+) and carries no alias, because go-pkcs12
//     writes no friendlyName for key entries; readers name the entry
//     themselves.
//   - With only CAs: a truststore with one trusted-certificate entry per CA,
//     named alias-1, alias-2, … in input order. Numbering is used even for
//     a single CA so that adding a CA during a rotation does not rename the
//     existing entry, and so that two CAs with the same subject (an old and a
//     renewed CA) do not collapse into one alias.
//
// Build re-runs Check's structural checks (parsing, key match, chain order)
// and refuses to write a keystore that fails them, but it does not look at
// validity dates: call Check first. It refuses Chain/Key and CAs together
// (ErrMixedInputs).
//
// Caveats: JKS lowercases aliases, as Java's JKS does. JKS stores each
// password byte as one Java char, so JKS passwords must be printable ASCII
// for Java to open the file with the same password. The password buffer is
// not modified; clearing it is the caller's job.
func Build(in Inputs, kind string, password []byte, alias string) ([]byte, error) {
	return build(in, kind, password, alias, nil, time.Time{})
}

// BuildReproducible is Build whose output depends on its arguments only: the same
// inputs, kind, password and alias give the same bytes, so that a rotation built again
// is the same command (see messages.Fingerprint). The salts and IVs that Build draws
// at random come from a stream keyed with the password and the inputs, and a JKS
// entry's creation time is its first certificate's NotBefore.
//
// The stream's key is stretched with PBKDF2 (reproducibleIterations, far more than
// the file's own key derivation): the salts it yields are in the file, and a cheap
// key would let whoever has the file and the (public) inputs of a truststore test
// guesses of its password faster than the file itself allows.
func BuildReproducible(in Inputs, kind string, password []byte, alias string) ([]byte, error) {
	label := strings.Join([]string{"apiops-worker reproducible keystore v1", strings.ToUpper(kind), alias,
		string(in.Chain), string(in.Key), string(in.CAs)}, "\x00")
	salt := sha256.Sum256([]byte(label))
	key, err := pbkdf2.Key(sha256.New, string(password), salt[:], reproducibleIterations, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	defer clear(key)
	return build(in, kind, password, alias, newDeterministicReader(key, label), time.Time{})
}

// reproducibleIterations stretches the key of a reproducible build's stream: well
// above the 2,048 of go-pkcs12's Modern2023 encoder and Java's 10,000.
const reproducibleIterations = 200_000

// build is Build with the randomness from random (crypto/rand when nil) and the JKS
// creation time created (when zero: now for Build, the first certificate's NotBefore
// for a reproducible build).
func build(in Inputs, kind string, password []byte, alias string, random io.Reader, created time.Time) ([]byte, error) {
	kind = strings.ToUpper(kind)
	if err := validateBuildArguments(kind, password, alias); err != nil {
		return nil, err
	}
	p, err := parseInputs(in)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(structuralProblems(p)...); err != nil {
		return nil, err
	}
	if p.hasKeyPair() && len(p.cas) > 0 {
		return nil, ErrMixedInputs
	}
	o := buildOptions{random: random, created: created}
	if o.random == nil {
		o.random, o.created = rand.Reader, time.Now()
	} else if p.hasKeyPair() {
		o.created = p.chain[0].NotBefore
	} else if len(p.cas) > 0 {
		o.created = p.cas[0].NotBefore
	}
	if p.hasKeyPair() {
		return buildKeyStore(kind, p, password, alias, o)
	}
	return buildTrustStore(kind, p.cas, password, alias, o)
}

// buildOptions are where a build's randomness and entry times come from.
type buildOptions struct {
	random  io.Reader
	created time.Time
}

func validateBuildArguments(kind string, password []byte, alias string) error {
	if kind != KindPKCS12 && kind != KindJKS {
		return fmt.Errorf("kind %q: %w", kind, ErrUnknownKind)
	}
	if len(password) == 0 {
		return fmt.Errorf("password: %w: empty", ErrInvalidPassword)
	}
	if kind == KindJKS && !isPrintableASCII(password) {
		return fmt.Errorf("password: %w: JKS needs printable ASCII, since each byte becomes one Java char", ErrInvalidPassword)
	}
	if strings.TrimSpace(alias) == "" {
		return fmt.Errorf("alias: %w: empty", ErrInvalidAlias)
	}
	return nil
}

func isPrintableASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func buildKeyStore(kind string, p parsedInputs, password []byte, alias string, o buildOptions) ([]byte, error) {
	if kind == KindJKS {
		return jksKeyStore(p, password, alias, o)
	}
	return pkcs12KeyStore(p, password, o)
}

func buildTrustStore(kind string, cas []*x509.Certificate, password []byte, alias string, o buildOptions) ([]byte, error) {
	if kind == KindJKS {
		return jksTrustStore(cas, password, alias, o)
	}
	return pkcs12TrustStore(cas, password, alias, o)
}

func trustedEntryAlias(alias string, index int) string {
	return fmt.Sprintf("%s-%d", alias, index+1)
}

func pkcs12KeyStore(p parsedInputs, password []byte, o buildOptions) ([]byte, error) {
	pfx, err := pkcs12.Modern2023.WithRand(o.random).Encode(p.key, p.chain[0], p.chain[1:], string(password))
	if err != nil {
		return nil, fmt.Errorf("PKCS12 keystore: encode: %w", err)
	}
	return pfx, nil
}

// pkcs12TrustStore uses EncodeTrustStoreEntries rather than EncodeTrustStore
// because the latter names entries by subject, and equal subjects collide.
func pkcs12TrustStore(cas []*x509.Certificate, password []byte, alias string, o buildOptions) ([]byte, error) {
	entries := make([]pkcs12.TrustStoreEntry, len(cas))
	for i, ca := range cas {
		entries[i] = pkcs12.TrustStoreEntry{Cert: ca, FriendlyName: trustedEntryAlias(alias, i)}
	}
	pfx, err := pkcs12.Modern2023.WithRand(o.random).EncodeTrustStoreEntries(entries, string(password))
	if err != nil {
		return nil, fmt.Errorf("PKCS12 truststore: encode: %w", err)
	}
	return pfx, nil
}

func jksKeyStore(p parsedInputs, password []byte, alias string, o buildOptions) ([]byte, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.key)
	if err != nil {
		return nil, fmt.Errorf("JKS keystore: key: %w", err)
	}
	// SetPrivateKeyEntry keeps only the encrypted form, so the plain DER can go.
	defer clear(keyDER)

	ks := keystore.New(keystore.WithCustomRandomNumberGenerator(o.random))
	entry := keystore.PrivateKeyEntry{
		CreationTime:     o.created,
		PrivateKey:       keyDER,
		CertificateChain: jksCertificates(p.chain),
	}
	if err := ks.SetPrivateKeyEntry(alias, entry, password); err != nil {
		return nil, fmt.Errorf("JKS keystore: entry %q: %w", alias, err)
	}
	return storeJKS("JKS keystore", ks, password)
}

func jksTrustStore(cas []*x509.Certificate, password []byte, alias string, o buildOptions) ([]byte, error) {
	// Ordered aliases make the file's entry order deterministic.
	ks := keystore.New(keystore.WithOrderedAliases(), keystore.WithCustomRandomNumberGenerator(o.random))
	now := o.created
	for i, ca := range cas {
		name := trustedEntryAlias(alias, i)
		entry := keystore.TrustedCertificateEntry{CreationTime: now, Certificate: jksCertificate(ca)}
		if err := ks.SetTrustedCertificateEntry(name, entry); err != nil {
			return nil, fmt.Errorf("JKS truststore: entry %q: %w", name, err)
		}
	}
	return storeJKS("JKS truststore", ks, password)
}

func storeJKS(what string, ks keystore.KeyStore, password []byte) ([]byte, error) {
	var out bytes.Buffer
	if err := ks.Store(&out, password); err != nil {
		return nil, fmt.Errorf("%s: store: %w", what, err)
	}
	return out.Bytes(), nil
}

func jksCertificates(certs []*x509.Certificate) []keystore.Certificate {
	out := make([]keystore.Certificate, len(certs))
	for i, cert := range certs {
		out[i] = jksCertificate(cert)
	}
	return out
}

func jksCertificate(cert *x509.Certificate) keystore.Certificate {
	return keystore.Certificate{Type: "X509", Content: cert.Raw}
}
