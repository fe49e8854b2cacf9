package keystores

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

// Contents is what an opened keystore file holds, as far as checking it needs.
type Contents struct {
	// Kind is KindPKCS12 or KindJKS.
	Kind string
	// PrivateKeys counts the private-key entries; when Unlisted is set it is a lower
	// bound.
	PrivateKeys int
	// Certificates are the file's certificates, each once: the key entries' chains
	// and the trusted entries.
	Certificates []*x509.Certificate
	// Unlisted says why the entries could not all be read although the password
	// opened the file; "" when they were. go-pkcs12 reads the layouts that Java,
	// OpenSSL and this package write, not every layout PKCS#12 allows.
	Unlisted string
}

// LacksPrivateKey reports whether the file holds no private key: none was read, and
// any entries left unread are certificates only. A file whose unread entries may be
// keys does not lack one as far as this checker knows.
func (c Contents) LacksPrivateKey() bool {
	return c.PrivateKeys == 0 && (c.Unlisted == "" || strings.Contains(c.Unlisted, "no private key"))
}

// maxMACIterations bounds the PBKDF iterations a PKCS#12 file may demand before its
// password is known to be right: the count is the file's to choose, and a huge one
// would hold the caller (the worker's intake) for minutes. Java writes 10,000, OpenSSL
// 2,048.
const maxMACIterations = 1 << 20

// Open opens file as a keystore of the declared kind (KindPKCS12 or KindJKS,
// case-insensitive) with password, as APIOps would before it stores the file.
//
// Errors (test them with errors.Is): ErrNotKeystore when the file is neither
// format or is damaged; ErrWrongType when it is the other format (or JCEKS), the
// message naming the format found; ErrWrongPassword; ErrUnsupportedKeystore when it
// asks for more work than this checker does; ErrUnknownKind for a kind other than the
// two. Messages name formats, entry aliases and counts, never bytes of the file or
// the password. The password buffer is not modified.
func Open(file []byte, kind string, password []byte) (Contents, error) {
	kind = strings.ToUpper(kind)
	if kind != KindPKCS12 && kind != KindJKS {
		return Contents{}, fmt.Errorf("keyStoreType %q: %w", kind, ErrUnknownKind)
	}
	found := sniffFormat(file)
	switch {
	case found == formatUnknown:
		return Contents{}, fmt.Errorf("%w: the file is neither PKCS12 nor JKS (it starts with neither a DER sequence nor the JKS magic number)", ErrNotKeystore)
	case found == formatPEM:
		return Contents{}, fmt.Errorf("%w: the file is PEM text; build a %s keystore from it (apiopsctl rotate)", ErrNotKeystore, kind)
	case found == formatBase64:
		return Contents{}, fmt.Errorf("%w: the file is base64 text of a keystore, so it was base64-encoded twice", ErrNotKeystore)
	case found == formatJCEKS:
		return Contents{}, fmt.Errorf("%w: the file is a JCEKS keystore, declared %s; APIOps takes JKS or PKCS12 (convert it with keytool -importkeystore)", ErrWrongType, kind)
	case found != kind:
		return Contents{}, fmt.Errorf("%w: the file is a %s keystore, declared %s; set keyStoreType to %s", ErrWrongType, found, kind, found)
	case kind == KindJKS:
		return openJKS(file, password)
	default:
		return openPKCS12(file, password)
	}
}

// Formats sniffFormat tells apart besides KindPKCS12 and KindJKS.
const (
	formatUnknown = ""
	formatPEM     = "PEM"
	formatJCEKS   = "JCEKS"
	formatBase64  = "base64"
)

const (
	jksMagic   = 0xfeedfeed
	jceksMagic = 0xcececece
)

// sniffFormat names the format file starts like, so that a mismatch can say what the
// file is rather than only that it does not open.
func sniffFormat(file []byte) string {
	if len(file) >= 4 {
		switch binary.BigEndian.Uint32(file) {
		case jksMagic:
			return KindJKS
		case jceksMagic:
			return formatJCEKS
		}
	}
	if looksLikePFX(file) {
		return KindPKCS12
	}
	if bytes.HasPrefix(bytes.TrimLeft(file, " \t\r\n"), []byte(pemBeginMarker)) {
		return formatPEM
	}
	if decoded, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(file))); err == nil && len(decoded) > 0 {
		defer clear(decoded)
		if inner := sniffFormat(decoded); inner == KindJKS || inner == KindPKCS12 {
			return formatBase64
		}
	}
	return formatUnknown
}

// looksLikePFX reports whether file starts as a PFX does: a SEQUENCE (definite or
// indefinite length) whose first member is INTEGER 3.
func looksLikePFX(file []byte) bool {
	if len(file) < 2 || file[0] != 0x30 {
		return false
	}
	rest := file[2:]
	if n := file[1]; n > 0x80 {
		lengthBytes := int(n & 0x7f)
		if lengthBytes > 4 || len(rest) < lengthBytes {
			return false
		}
		rest = rest[lengthBytes:]
	}
	return bytes.HasPrefix(rest, []byte{0x02, 0x01, 0x03})
}

// pfxOutline is as much of a PFX as is read before the password is used.
type pfxOutline struct {
	Version  int
	AuthSafe asn1.RawValue
	MacData  struct {
		Mac        asn1.RawValue
		MacSalt    []byte
		Iterations int `asn1:"optional,default:1"`
	} `asn1:"optional"`
}

func openPKCS12(file, password []byte) (Contents, error) {
	if file[1] == 0x80 {
		// BER's indefinite lengths: Java reads them, encoding/asn1 and so go-pkcs12
		// do not. Refusing would refuse what APIOps takes.
		return Contents{Kind: KindPKCS12, Unlisted: "it is BER-encoded, with indefinite lengths, which this checker does not read"}, nil
	}
	var outline pfxOutline
	if rest, err := asn1.Unmarshal(file, &outline); err != nil || len(rest) > 0 {
		return Contents{}, fmt.Errorf("%w: the file starts like PKCS12 but is damaged or truncated", ErrNotKeystore)
	}
	if outline.MacData.Iterations > maxMACIterations {
		return Contents{}, fmt.Errorf("%w: its MAC asks for %d iterations, more than the %d this checker runs", ErrUnsupportedKeystore, outline.MacData.Iterations, maxMACIterations)
	}
	// go-pkcs12 has no call that lists every entry; DecodeChain reads a key with its
	// certificates, DecodeTrustStore certificates marked trusted as Java marks them.
	c := Contents{Kind: KindPKCS12}
	key, leaf, cas, err := pkcs12.DecodeChain(file, string(password))
	if err == nil {
		c.PrivateKeys = 1
		c.Certificates = append([]*x509.Certificate{leaf}, cas...)
		if !matchesAny(key, c.Certificates) {
			return Contents{}, fmt.Errorf("%w: the private key matches none of the file's certificates", ErrKeyMismatch)
		}
		return c, nil
	}
	if errors.Is(err, pkcs12.ErrIncorrectPassword) || errors.Is(err, pkcs12.ErrDecryption) {
		return Contents{}, fmt.Errorf("%w: the password does not open this PKCS12 keystore", ErrWrongPassword)
	}
	// The remaining errors come after the MAC was verified, so the password is right.
	// go-pkcs12 words them without sentinels, hence the comparison of texts.
	chainErr := err.Error()
	if certs, err := pkcs12.DecodeTrustStore(file, string(password)); err == nil {
		c.Certificates = certs
		return c, nil
	}
	switch {
	case strings.HasSuffix(chainErr, "private key missing"):
		c.Unlisted = "it holds no private key, and its certificates are not marked trusted as Java marks them"
	case strings.HasSuffix(chainErr, "expected exactly one key bag"):
		c.PrivateKeys = 2
		c.Unlisted = "it holds more than one private key"
	default:
		c.PrivateKeys = 0
		c.Unlisted = "its layout is one this checker does not read"
	}
	return c, nil
}

func matchesAny(key any, certs []*x509.Certificate) bool {
	signer, ok := key.(crypto.Signer)
	if !ok {
		return true // a key type we cannot compare: leave it to APIOps
	}
	for _, cert := range certs {
		if publicKeysEqual(signer.Public(), cert.PublicKey) {
			return true
		}
	}
	return false
}

func openJKS(file, password []byte) (Contents, error) {
	if err := checkJKSLayout(file); err != nil {
		return Contents{}, err
	}
	jksPassword, ok := javaCharBytes(password)
	if !ok {
		return Contents{Kind: KindJKS, Unlisted: "its password has characters beyond Latin-1, which this checker cannot pass to a JKS file as Java does"}, nil
	}
	defer clear(jksPassword)
	ks := keystore.New(keystore.WithOrderedAliases(), keystore.WithCaseExactAliases())
	if err := ks.Load(bytes.NewReader(file), jksPassword); err != nil {
		// checkJKSLayout has read the same structure, so only the digest can fail.
		return Contents{}, fmt.Errorf("%w: the password does not open this JKS keystore (it was tampered with, or the password is incorrect)", ErrWrongPassword)
	}
	c := Contents{Kind: KindJKS}
	seen := map[string]bool{}
	addCertificate := func(alias string, cert keystore.Certificate) error {
		if !strings.Contains(cert.Type, "509") || seen[string(cert.Content)] {
			return nil
		}
		seen[string(cert.Content)] = true
		parsed, err := x509.ParseCertificate(cert.Content)
		if err != nil {
			return fmt.Errorf("%w: entry %q holds a certificate that does not parse", ErrNotKeystore, alias)
		}
		c.Certificates = append(c.Certificates, parsed)
		return nil
	}
	for _, alias := range ks.Aliases() {
		if ks.IsTrustedCertificateEntry(alias) {
			entry, _ := ks.GetTrustedCertificateEntry(alias)
			if err := addCertificate(alias, entry.Certificate); err != nil {
				return Contents{}, err
			}
			continue
		}
		entry, err := ks.GetPrivateKeyEntry(alias, jksPassword)
		if err != nil {
			return Contents{}, fmt.Errorf("%w: the private key of entry %q does not open with the keystore's password (it has a key password of its own, which APIOps cannot be given)", ErrWrongPassword, alias)
		}
		key, parseErr := x509.ParsePKCS8PrivateKey(entry.PrivateKey)
		clear(entry.PrivateKey)
		c.PrivateKeys++
		first := len(c.Certificates)
		for _, cert := range entry.CertificateChain {
			if err := addCertificate(alias, cert); err != nil {
				return Contents{}, err
			}
		}
		if parseErr == nil && len(c.Certificates) > first && !matchesAny(key, c.Certificates[first:]) {
			return Contents{}, fmt.Errorf("%w: entry %q: the private key matches none of its certificates", ErrKeyMismatch, alias)
		}
	}
	return c, nil
}

// javaCharBytes turns password into the bytes keystore-go hashes, one per Java char:
// it writes each byte as a char, while Java (APIOps) turns the password's text into
// UTF-16 chars. They agree for Latin-1, so UTF-8 text is decoded to it first.
func javaCharBytes(password []byte) ([]byte, bool) {
	if !utf8.Valid(password) {
		return nil, false
	}
	out := make([]byte, 0, len(password))
	for _, r := range string(password) {
		if r > 0xff {
			clear(out)
			return nil, false
		}
		out = append(out, byte(r))
	}
	return out, true
}

// checkJKSLayout walks the JKS structure and checks every length against the bytes
// that are there. keystore-go allocates whatever a length field says before reading,
// so a short file claiming a 4 GiB certificate would otherwise exhaust memory.
func checkJKSLayout(file []byte) error {
	damaged := func(what string) error {
		return fmt.Errorf("%w: the file starts like JKS but is damaged or truncated (%s)", ErrNotKeystore, what)
	}
	r := jksReader{data: file}
	r.uint32() // magic, checked by sniffFormat
	version := r.uint32()
	if version != 1 && version != 2 {
		return damaged(fmt.Sprintf("unknown version %d", version))
	}
	entries := r.uint32()
	for i := uint32(0); i < entries && r.ok(); i++ {
		tag := r.uint32()
		r.skip(int(r.uint16())) // alias
		r.skip(8)               // creation time
		switch tag {
		case 1: // private key: encrypted key, then its chain
			r.skip(int(r.uint32()))
			chain := r.uint32()
			for j := uint32(0); j < chain && r.ok(); j++ {
				r.certificate(version)
			}
		case 2: // trusted certificate
			r.certificate(version)
		default:
			return damaged(fmt.Sprintf("entry %d has unknown tag %d", i+1, tag))
		}
	}
	r.skip(20) // SHA-1 digest
	switch {
	case !r.ok():
		return damaged("a length runs past the end of the file")
	case len(r.data) > 0:
		return damaged("bytes follow the digest")
	}
	return nil
}

// jksReader reads big-endian fields; once a read runs past the end, it stays failed
// and reads return zero, so that loops over counts end at once.
type jksReader struct {
	data   []byte
	failed bool
}

func (r *jksReader) ok() bool { return !r.failed }

func (r *jksReader) take(n int) []byte {
	if r.failed || n < 0 || n > len(r.data) {
		r.failed = true
		return nil
	}
	b := r.data[:n]
	r.data = r.data[n:]
	return b
}

func (r *jksReader) skip(n int) { r.take(n) }

func (r *jksReader) uint16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *jksReader) uint32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *jksReader) certificate(version uint32) {
	if version == 2 {
		r.skip(int(r.uint16())) // certificate type
	}
	length := r.uint32()
	if uint64(length) > uint64(len(r.data)) {
		r.failed = true
		return
	}
	r.skip(int(length))
}

// CheckFile opens file as Open does and checks it as of now; needKey says that the
// file serves as a keystore (a private key for TLS client or server authentication)
// rather than a truststore.
//
// Errors (joined; test them with errors.Is): those of Open; ErrNoPrivateKey when
// needKey and the file holds no private-key entry; ErrKeyMismatch when a private key
// matches none of its certificates; ErrExpired and ErrNotYetValid for any certificate
// outside its validity period.
//
// Warnings: a certificate that expires within ExpiryWarningWindow; a file whose
// entries could not all be read (see Contents.Unlisted), so that dates, or the key,
// went unchecked.
func CheckFile(file []byte, kind string, password []byte, needKey bool, now time.Time) (warnings []string, err error) {
	c, err := Open(file, kind, password)
	if err != nil {
		return nil, err
	}
	if c.Unlisted != "" {
		warnings = append(warnings, fmt.Sprintf("the %s file opens with its password, but its entries were not all read (%s): certificate dates were not checked", c.Kind, c.Unlisted))
	}
	var problems []error
	if needKey && c.LacksPrivateKey() {
		problems = append(problems, fmt.Errorf("%w: the %s file holds only certificates, and it is assigned as a keystore, which needs a private key (a truststore does not)", ErrNoPrivateKey, c.Kind))
	}
	for i, cert := range c.Certificates {
		if remaining := cert.NotAfter.Sub(now); !now.Before(cert.NotBefore) && remaining >= 0 && remaining < ExpiryWarningWindow {
			warnings = append(warnings, fmt.Sprintf("certificate %d (%s) expires in %s, at %s",
				i+1, describe(cert), formatRemaining(remaining), formatTime(cert.NotAfter)))
		}
	}
	problems = append(problems, validityProblems("", c.Certificates, now)...)
	return warnings, errors.Join(problems...)
}
