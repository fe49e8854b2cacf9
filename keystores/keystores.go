// Package keystores turns PEM certificates and keys into PKCS#12 or JKS
// keystores and truststores for API gateways, after checking that the inputs
// are usable.
//
// The intended flow is Check, then Build. Check reports everything it finds
// in one go (errors are joined with errors.Join) so that an operator can fix
// all inputs at once; Build repeats the structural checks, but not the date
// checks, because it has no notion of "now".
//
// Open and CheckFile go the other way: they open a keystore file with its password
// and declared type, as APIOps will, and CheckCommand does so for every file of a
// command, so that a file APIOps would refuse is caught before it is sent (see
// docs/keystores.md).
//
// Caveats that apply to the whole package:
//   - Error messages name inputs, PEM block numbers, PEM block types and
//     certificate subjects and dates. They never contain PEM text or key
//     bytes; that is also why a key parser's own error text is not passed on.
//   - Parsed private keys (big integers inside crypto/rsa and crypto/ecdsa)
//     cannot be wiped; only byte buffers this package owns are cleared.
//   - go-pkcs12 takes the password as a string, so PKCS#12 output leaves one
//     immutable copy of the password in memory until it is garbage-collected.
package keystores

import (
	"errors"
	"time"
)

// Inputs are the PEM documents a keystore or truststore is built from.
//
// Give Chain and Key together for a keystore, or only CAs for a truststore.
// Check accepts all three at once, so a rotation can be validated as a whole,
// but Build refuses that combination: a keystore and a truststore are
// separate files and silently dropping one part would be worse.
type Inputs struct {
	// Chain holds CERTIFICATE blocks: the leaf first, then each issuer in
	// turn. Including the root is optional.
	Chain []byte
	// Key holds exactly one unencrypted private key: "PRIVATE KEY"
	// (PKCS#8), "RSA PRIVATE KEY" (PKCS#1) or "EC PRIVATE KEY" (SEC1; a
	// preceding "EC PARAMETERS" block, as openssl ecparam writes, is skipped).
	Key []byte
	// CAs holds CERTIFICATE blocks to be trusted. Optional.
	CAs []byte
}

// ExpiryWarningWindow is how close to its NotAfter date a leaf certificate
// makes Check warn instead of staying silent.
const ExpiryWarningWindow = 30 * 24 * time.Hour

// Kinds of keystore Build can write. Build compares case-insensitively.
const (
	KindPKCS12 = "PKCS12"
	KindJKS    = "JKS"
)

// Errors that Check and Build wrap, so callers can branch with errors.Is.
var (
	ErrNoInputs        = errors.New("no inputs: give a chain and key, or CAs")
	ErrMissingInput    = errors.New("missing input")
	ErrUnparsable      = errors.New("unparsable PEM")
	ErrEncryptedKey    = errors.New("private key is encrypted")
	ErrKeyMismatch     = errors.New("private key does not match the leaf certificate")
	ErrChainOrder      = errors.New("chain out of order")
	ErrExpired         = errors.New("certificate has expired")
	ErrNotYetValid     = errors.New("certificate is not yet valid")
	ErrMixedInputs     = errors.New("both a chain/key and CAs given: build the keystore and the truststore separately")
	ErrUnknownKind     = errors.New("unknown keystore kind (want PKCS12 or JKS)")
	ErrInvalidPassword = errors.New("invalid password")
	ErrInvalidAlias    = errors.New("invalid alias")
)

// Errors that Open and CheckFile wrap, besides ErrKeyMismatch, ErrExpired,
// ErrNotYetValid and ErrUnknownKind.
var (
	ErrNotKeystore         = errors.New("not a keystore")
	ErrWrongType           = errors.New("keystore type does not match the file")
	ErrWrongPassword       = errors.New("wrong keystore password")
	ErrNoPrivateKey        = errors.New("no private key")
	ErrUnsupportedKeystore = errors.New("keystore not supported")
)
