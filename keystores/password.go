package keystores

import (
	"bytes"
	"crypto/rand"
	"fmt"
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

// ReadPasswordFile returns the contents of path without trailing CR/LF
// characters, so files written by `echo` or an editor work. Other whitespace
// is kept: it may be part of the password. An empty result is an error,
// since an empty password would silently produce an unprotected store. The
// caller owns the result and should clear() it when done.
func ReadPasswordFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	password := bytes.TrimRight(data, "\r\n")
	if len(password) == 0 {
		return nil, fmt.Errorf("password file %s: %w: empty", path, ErrInvalidPassword)
	}
	return password, nil
}
