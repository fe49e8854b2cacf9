package seal

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/apiops-worker/apiops-worker/messages"
)

// maxSeedFile bounds a key file: a curve seed is 58 characters.
const maxSeedFile = 1 << 10

// Keyring holds a worker's curve key pairs: the current one, which publishers seal
// for, and older ones that still open what was sealed for them. It is a
// messages.Opener. A Keyring does not change once made, and is safe for concurrent
// use.
type Keyring struct {
	keys    map[string]nkeys.KeyPair // by public key
	publics []string                 // in the order given, the current one last
}

// ParseSeed parses a curve seed (SX…), ignoring white space around it. The error
// never shows the seed.
func ParseSeed(seed []byte) (nkeys.KeyPair, error) {
	seed = bytes.TrimSpace(seed)
	if !bytes.HasPrefix(seed, []byte("SX")) {
		return nil, errors.New("not a curve seed: it must start with SX")
	}
	kp, err := nkeys.FromCurveSeed(seed)
	if err != nil {
		return nil, errors.New("not a curve seed: SX followed by the seed's base32 with a valid checksum")
	}
	return kp, nil
}

// NewKeyring returns a keyring of the curve seeds given (SX…); the last one is
// current. A seed given twice is held once, where it comes last.
func NewKeyring(seeds ...[]byte) (*Keyring, error) {
	kps := make([]nkeys.KeyPair, len(seeds))
	for i, seed := range seeds {
		kp, err := ParseSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("seed %d: %w", i+1, err)
		}
		kps[i] = kp
	}
	return newKeyring(kps)
}

func newKeyring(kps []nkeys.KeyPair) (*Keyring, error) {
	if len(kps) == 0 {
		return nil, errors.New("no keys")
	}
	r := &Keyring{keys: make(map[string]nkeys.KeyPair, len(kps))}
	for _, kp := range kps {
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, err
		}
		if _, ok := r.keys[pub]; ok {
			r.publics = deleteString(r.publics, pub)
		}
		r.keys[pub] = kp
		r.publics = append(r.publics, pub)
	}
	return r, nil
}

func deleteString(s []string, v string) []string {
	out := s[:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// Current returns the public key of the current key: the one to announce, and to
// seal for.
func (r *Keyring) Current() string { return r.publics[len(r.publics)-1] }

// Publics returns the public keys the keyring holds, the current one last.
func (r *Keyring) Publics() []string { return append([]string(nil), r.publics...) }

// digestLabel separates the digest keys derived from a seed from any other use of it.
const digestLabel = "apiops-worker idempotency digest v1"

// DigestKey returns the key that digests secrets in idempotency records (see
// messages.Fingerprint), derived from the seed of the key pair pub (the current one
// when pub is ""), and the public key it was derived from, which names it in records.
// ok is false when the keyring does not hold pub. Only holders of the seed can compute
// it, so a record's digests cannot be used to test guesses of a secret.
func (r *Keyring) DigestKey(pub string) (key []byte, id string, ok bool) {
	if pub == "" {
		pub = r.Current()
	}
	kp, ok := r.keys[pub]
	if !ok {
		return nil, "", false
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, "", false
	}
	defer clear(seed)
	mac := hmac.New(sha256.New, seed)
	mac.Write([]byte(digestLabel))
	return mac.Sum(nil), pub, true
}

// Has reports whether the keyring holds the key pair of the public key pub.
func (r *Keyring) Has(pub string) bool {
	_, ok := r.keys[pub]
	return ok
}

// UnknownKeyError is Open's error for a value sealed for a key the keyring does not
// hold.
type UnknownKeyError struct{ Key string }

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("sealed for key %s, which this worker does not have", quoteKey(e.Key))
}

// Open opens a sealed value, implementing messages.Opener. Its errors name keys,
// never values: the value was sealed for a key the keyring does not hold (an
// *UnknownKeyError); it does not open with the key it names (corrupt, or sealed for
// another key); or what it holds is not a sealed content. Open does not check the
// content's project and field: messages.DecodeWith does.
func (r *Keyring) Open(s messages.Sealed) (messages.SealedContent, error) {
	kp, ok := r.keys[s.For]
	if !ok {
		return messages.SealedContent{}, &UnknownKeyError{Key: s.For}
	}
	box, err := base64.StdEncoding.Strict().DecodeString(s.Box)
	if err != nil {
		return messages.SealedContent{}, errors.New("the box is not standard base64")
	}
	if !nkeys.IsValidPublicCurveKey(s.From) {
		return messages.SealedContent{}, fmt.Errorf("the sender's key %s is not a public curve key", quoteKey(s.From))
	}
	plain, err := kp.Open(box, s.From)
	if err != nil {
		return messages.SealedContent{}, fmt.Errorf("does not open with key %s: corrupt, or sealed for another key", s.For)
	}
	defer clear(plain)
	var c messages.SealedContent
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.Decode(new(json.RawMessage)) != io.EOF {
		return messages.SealedContent{}, fmt.Errorf("opens with key %s but does not hold a sealed content (a JSON object of project, field and value)", s.For)
	}
	return c, nil
}

// LoadDir loads a keyring from a directory of curve seeds, one per file: every regular
// file (or symbolic link to one) whose name does not start with "." (where Kubernetes
// keeps a mounted Secret's ..data links). The file whose name sorts last holds the
// current key. A directory without such files, or a file that does not hold a curve
// seed, is an error naming the file, never its content.
func LoadDir(dir string) (*Keyring, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("seal keys: %w", err)
	}
	var kps []nkeys.KeyPair // in name order: os.ReadDir sorts
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		kp, err := loadSeedFile(path)
		if errors.Is(err, errNotRegular) {
			continue
		}
		if err != nil {
			return nil, err
		}
		kps = append(kps, kp)
	}
	if len(kps) == 0 {
		return nil, fmt.Errorf("seal keys: no key files in %s: want one curve seed (SX…) per file", dir)
	}
	return newKeyring(kps)
}

var errNotRegular = errors.New("not a regular file")

func loadSeedFile(path string) (nkeys.KeyPair, error) {
	st, err := os.Stat(path) // of what a symbolic link points to
	switch {
	case err != nil:
		return nil, fmt.Errorf("seal key file: %w", err)
	case !st.Mode().IsRegular(): // not even opened: a named pipe would block
		return nil, errNotRegular
	case st.Size() > maxSeedFile:
		return nil, fmt.Errorf("seal key file %s: %d bytes is too large for a curve seed", path, st.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seal key file: %w", err)
	}
	defer f.Close()
	buf := make([]byte, maxSeedFile) // one buffer, cleared: no copies left by growing one
	defer clear(buf)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("seal key file: %w", err)
	}
	kp, err := ParseSeed(buf[:n])
	if err != nil {
		return nil, fmt.Errorf("seal key file %s: %w", path, err)
	}
	return kp, nil
}

// GenerateKeyFile writes a new curve seed to path, readable by its owner only (mode
// 0600), and returns its public key. It does not overwrite an existing file.
func GenerateKeyFile(path string) (public string, err error) {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return "", fmt.Errorf("make a curve key: %w", err)
	}
	defer kp.Wipe()
	public, err = kp.PublicKey()
	if err != nil {
		return "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	defer clear(seed)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("%s exists: not overwriting it (it may hold a key still in use)", path)
	}
	if err != nil {
		return "", err
	}
	_, err = f.Write(seed)
	if err == nil {
		_, err = f.Write([]byte("\n"))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return public, nil
}
