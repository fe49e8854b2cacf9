package keystores

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
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

// maxIterations bounds each PBKDF iteration count a PKCS#12 file may demand: that of
// its MAC, of a PBMAC1 or PBES2 key derivation (PBKDF2), of a PKCS#12 PBE. The counts
// are the file's to choose and are run before the password is known to be right (the
// MAC's) or right after; a huge one would hold a core for minutes. Java writes 10,000
// (100,000 and 50,000 before Java 12), OpenSSL 2,048, go-pkcs12 (so Build) 2,048.
const maxIterations = 1 << 18

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
	AuthSafe pfxContentInfo
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
	work, err := readPFXWork(file)
	if err != nil {
		return Contents{}, err
	}
	// go-pkcs12 has no call that lists every entry; DecodeChain reads a key with its
	// certificates, DecodeTrustStore certificates marked trusted as Java marks them.
	// A file of one safe with no key bag in sight is read as a truststore first, so
	// that a truststore has its keys derived once, not twice.
	c := Contents{Kind: KindPKCS12}
	trustStoreTried := work.safes == 1 && !work.keyBagSeen
	if trustStoreTried {
		certs, err := pkcs12.DecodeTrustStore(file, string(password))
		if err == nil {
			c.Certificates = certs
			return c, nil
		}
		if errors.Is(err, pkcs12.ErrIncorrectPassword) || errors.Is(err, pkcs12.ErrDecryption) {
			return Contents{}, fmt.Errorf("%w: the password does not open this PKCS12 keystore", ErrWrongPassword)
		}
	}
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
	if !trustStoreTried {
		if certs, err := pkcs12.DecodeTrustStore(file, string(password)); err == nil {
			c.Certificates = certs
			return c, nil
		}
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

// The PKCS#12 structures that hold iteration counts, as go-pkcs12 reads them: what
// does not parse here does not parse there either, and go-pkcs12 derives no key from
// it. They are parsed without go-pkcs12's check for trailing bytes, so that they take
// at least what it takes.
type (
	pfxContentInfo struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
	}
	pfxDigestInfo struct {
		Algorithm pkix.AlgorithmIdentifier
		Digest    []byte
	}
	pfxEncryptedData struct {
		Version              int
		EncryptedContentInfo struct {
			ContentType                asn1.ObjectIdentifier
			ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
			EncryptedContent           []byte `asn1:"tag:0,optional"`
		}
	}
	pfxSafeBag struct {
		ID    asn1.ObjectIdentifier
		Value asn1.RawValue `asn1:"tag:0,explicit"`
	}
	pfxEncryptedKey struct {
		Algorithm     pkix.AlgorithmIdentifier
		EncryptedData []byte
	}
	// pbes2Params is also PBMAC1's: a key derivation, then the cipher or the MAC.
	pbes2Params struct {
		KeyDerivation pkix.AlgorithmIdentifier
		Scheme        pkix.AlgorithmIdentifier
	}
	pbkdf2Params struct {
		Salt       asn1.RawValue
		Iterations int
		KeyLength  int                      `asn1:"optional"`
		PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
	}
	pkcs12PBEParams struct {
		Salt       []byte
		Iterations int
	}
)

var (
	oidData            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEncryptedData   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidPBKDF2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidPBES2           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBMAC1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 14}
	oidPKCS12PBE       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1} // pbeWithSHAAnd…: 1.2.840.113549.1.12.1.x
	oidKeyBag          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 1}
	oidShroudedKeyBag  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidSafeContentsBag = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 6}
)

// maxBagNesting bounds how deep safeContentsBags may nest. Java and OpenSSL nest none
// and go-pkcs12 reads none; a deeper file is refused rather than walked.
const maxBagNesting = 4

// pfxWork is the key-derivation work a PFX shows before its password is used: the
// iteration counts of its MAC, of its encryptedData safes' encryption, and of the
// shrouded key bags in its plain (data) safes. Bags inside encryptedData are seen only
// once decrypted, so their counts are not among these: go-pkcs12 decrypts them after
// the MAC has proven the password right.
type pfxWork struct {
	largest      int    // the largest count
	largestWhere string // what asks for it
	total        int64  // the counts added up
	safes        int    // ContentInfos in the authenticated safe
	keyBagSeen   bool   // a key bag, shrouded or not, in a plain safe
	tooDeep      bool   // safeContentsBags nest deeper than maxBagNesting
}

func (p *pfxWork) add(iterations int, where string) {
	if iterations <= 0 {
		return // no derivation round runs
	}
	if iterations > p.largest {
		p.largest, p.largestWhere = iterations, where
	}
	p.total = min(p.total+int64(iterations), math.MaxInt64/2)
}

// refusal is ErrUnsupportedKeystore for work this checker does not do, else nil.
func (p pfxWork) refusal() error {
	switch {
	case p.tooDeep:
		return fmt.Errorf("%w: its safe contents nest more than %d deep", ErrUnsupportedKeystore, maxBagNesting)
	case p.largest > maxIterations:
		return fmt.Errorf("%w: %s asks for %d PBKDF iterations, more than the %d this checker runs", ErrUnsupportedKeystore, p.largestWhere, p.largest, maxIterations)
	}
	return nil
}

// work walks the PFX for the iteration counts it shows.
func (o pfxOutline) work() pfxWork {
	var w pfxWork
	w.add(o.MacData.Iterations, "its MAC")
	var mac pfxDigestInfo
	if _, err := asn1.Unmarshal(o.MacData.Mac.FullBytes, &mac); err == nil {
		w.addAlgorithm(mac.Algorithm, "its MAC")
	}
	content := o.AuthSafe.Content
	if _, err := asn1.Unmarshal(content.Bytes, &content); err != nil {
		return w
	}
	var safes []pfxContentInfo
	if _, err := asn1.Unmarshal(content.Bytes, &safes); err != nil {
		return w
	}
	w.safes = len(safes)
	for _, safe := range safes {
		switch {
		case safe.ContentType.Equal(oidData):
			var data []byte
			if _, err := asn1.Unmarshal(safe.Content.Bytes, &data); err == nil {
				w.addSafeContents(data, 0)
			}
		case safe.ContentType.Equal(oidEncryptedData):
			var encrypted pfxEncryptedData
			if _, err := asn1.Unmarshal(safe.Content.Bytes, &encrypted); err == nil {
				w.addAlgorithm(encrypted.EncryptedContentInfo.ContentEncryptionAlgorithm, "its encrypted contents")
			}
		}
	}
	return w
}

func (p *pfxWork) addSafeContents(data []byte, depth int) {
	if depth > maxBagNesting {
		p.tooDeep = true
		return
	}
	var bags []pfxSafeBag
	if _, err := asn1.Unmarshal(data, &bags); err != nil {
		return
	}
	for _, bag := range bags {
		switch {
		case bag.ID.Equal(oidKeyBag):
			p.keyBagSeen = true
		case bag.ID.Equal(oidShroudedKeyBag):
			p.keyBagSeen = true
			var key pfxEncryptedKey
			if _, err := asn1.Unmarshal(bag.Value.Bytes, &key); err == nil {
				p.addAlgorithm(key.Algorithm, "a shrouded private key")
			}
		case bag.ID.Equal(oidSafeContentsBag):
			p.addSafeContents(bag.Value.Bytes, depth+1)
		}
	}
}

// addAlgorithm adds the iteration count of a PBKDF2, PBES2, PBMAC1 or PKCS#12 PBE
// algorithm; others derive no key from the password.
func (p *pfxWork) addAlgorithm(alg pkix.AlgorithmIdentifier, where string) {
	switch {
	case alg.Algorithm.Equal(oidPBKDF2):
		var params pbkdf2Params
		if _, err := asn1.Unmarshal(alg.Parameters.FullBytes, &params); err == nil {
			p.add(params.Iterations, where)
		}
	case alg.Algorithm.Equal(oidPBES2), alg.Algorithm.Equal(oidPBMAC1):
		var params pbes2Params
		if _, err := asn1.Unmarshal(alg.Parameters.FullBytes, &params); err == nil && params.KeyDerivation.Algorithm.Equal(oidPBKDF2) {
			p.addAlgorithm(params.KeyDerivation, where)
		}
	case len(alg.Algorithm) == len(oidPKCS12PBE)+1 && alg.Algorithm[:len(oidPKCS12PBE)].Equal(oidPKCS12PBE):
		var params pkcs12PBEParams
		if _, err := asn1.Unmarshal(alg.Parameters.FullBytes, &params); err == nil {
			p.add(params.Iterations, where)
		}
	}
}

// readPFXWork reads the outline of a DER-encoded PFX and the work it shows; the error
// is Open's for a damaged file, or for one asking for more work than this checker does.
func readPFXWork(file []byte) (pfxWork, error) {
	var outline pfxOutline
	if rest, err := asn1.Unmarshal(file, &outline); err != nil || len(rest) > 0 {
		return pfxWork{}, fmt.Errorf("%w: the file starts like PKCS12 but is damaged or truncated", ErrNotKeystore)
	}
	work := outline.work()
	return work, work.refusal()
}

// openingCost is the iteration counts Open would run for file, added up: those of a
// PKCS12 file it does not refuse unopened, else 0.
func openingCost(file []byte, kind string) int64 {
	// looksLikePFX is what makes sniffFormat say PKCS12 (the JKS and JCEKS magic
	// numbers start otherwise), without its look for base64 text.
	if !strings.EqualFold(kind, KindPKCS12) || !looksLikePFX(file) || file[1] == 0x80 {
		return 0
	}
	work, err := readPFXWork(file)
	if err != nil {
		return 0
	}
	return work.total
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
	return checkContents(c, needKey, now)
}

// checkContents is CheckFile for a file Open has opened into c.
func checkContents(c Contents, needKey bool, now time.Time) (warnings []string, err error) {
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
