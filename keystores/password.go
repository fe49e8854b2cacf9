package keystores

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"os"
)

// PasswordAlphabet is what GeneratePassword draws from: letters and digits
// survive shells, URLs, JSON, YAML, properties files and Java's char[]
// handling without quoting or escaping.
const PasswordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// GeneratedPasswordLength gives about 190 bits of entropy, far above what
// the 2048 PBKDF2 iterations of PKCS#12 and JKS's single SHA-1 need to resist
// guessing.
const GeneratedPasswordLength = 32

// GeneratePassword returns GeneratedPasswordLength characters drawn
// uniformly from PasswordAlphabet using crypto/rand. The caller owns the
// result and should clear() it when done.
func GeneratePassword() ([]byte, error) {
	password := make([]byte, GeneratedPasswordLength)
	random := make([]byte, 64)
	defer clear(random)
	// Bytes at or above the largest multiple of the alphabet size are
	// rejected, so that modulo does not favour the first letters.
	limit := byte(256 - 256%len(PasswordAlphabet))
	filled := 0
	for filled < len(password) {
		if _, err := rand.Read(random); err != nil {
			clear(password)
			return nil, fmt.Errorf("generate password: %w", err)
		}
		for _, b := range random {
			if filled == len(password) {
				break
			}
			if b < limit {
				password[filled] = PasswordAlphabet[int(b)%len(PasswordAlphabet)]
				filled++
			}
		}
	}
	return password, nil
}

// ReadPasswordFile returns the one line of path without its trailing CR/LF, so
// files written by `echo` or an editor work. Other whitespace is kept: it may be part
// of the password. An empty result is an error, since an empty password would
// silently produce an unprotected store; so is a second line, which would silently
// become part of the password. The caller owns the result and should clear() it when
// done.
func ReadPasswordFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	password := bytes.TrimRight(data, "\r\n")
	if len(password) == 0 {
		clear(data)
		return nil, fmt.Errorf("password file %s: %w: empty", path, ErrInvalidPassword)
	}
	if bytes.ContainsAny(password, "\r\n") {
		clear(data)
		return nil, fmt.Errorf("password file %s: %w: more than one line (the password is the file's one line)", path, ErrInvalidPassword)
	}
	return password, nil
}

// passwordLabel separates passwords derived for rotations from any other use of the
// secret they are derived from.
const passwordLabel = "apiops-worker rotation password v1"

// DerivePassword returns a GeneratedPasswordLength-character password (from
// PasswordAlphabet) that depends on in's secret part and on context only: the same
// rotation built again gets the same password, so that its plan is the same command.
// It is derived from the private key, which is what the password protects: whoever
// can compute it holds the key already. A truststore has no secret to derive from, so
// its password must be given. The caller owns the result.
func DerivePassword(in Inputs, context string) ([]byte, error) {
	p, err := parseInputs(in)
	if err != nil {
		return nil, err
	}
	if !p.hasKeyPair() {
		return nil, errors.New("derive password: a truststore holds public certificates only: give its password")
	}
	secret, err := x509.MarshalPKCS8PrivateKey(p.key)
	if err != nil {
		return nil, fmt.Errorf("derive password: %w", err)
	}
	defer clear(secret)
	stream := newDeterministicReader(secret, passwordLabel+"\x00"+context)
	password := make([]byte, GeneratedPasswordLength)
	limit := byte(256 - 256%len(PasswordAlphabet))
	var b [1]byte
	for filled := 0; filled < len(password); {
		_, _ = stream.Read(b[:])
		if b[0] < limit {
			password[filled] = PasswordAlphabet[int(b[0])%len(PasswordAlphabet)]
			filled++
		}
	}
	return password, nil
}

// deterministicReader is an endless stream of bytes that depend on key and label
// only (HMAC-SHA256 in counter mode): the randomness of a build that must come out the
// same for the same inputs. It must be keyed with a secret, so that nobody else can
// predict it.
type deterministicReader struct {
	mac     hash.Hash
	counter uint64
	buf     []byte
}

func newDeterministicReader(key []byte, label string) *deterministicReader {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(label))
	first := mac.Sum(nil)
	return &deterministicReader{mac: hmac.New(sha256.New, first)}
}

func (r *deterministicReader) Read(p []byte) (int, error) {
	for n := 0; n < len(p); {
		if len(r.buf) == 0 {
			r.mac.Reset()
			r.mac.Write(binary.BigEndian.AppendUint64(nil, r.counter))
			r.counter++
			r.buf = r.mac.Sum(nil)
		}
		c := copy(p[n:], r.buf)
		r.buf = r.buf[c:]
		n += c
	}
	return len(p), nil
}
