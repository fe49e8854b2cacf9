package keystores

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGeneratePasswordLengthAndAlphabet(t *testing.T) {
	const samples = 1000
	seen := map[string]bool{}
	used := map[byte]bool{}
	for range samples {
		password, err := GeneratePassword()
		if err != nil {
			t.Fatalf("GeneratePassword() error = %v", err)
		}
		if len(password) < 24 {
			t.Fatalf("GeneratePassword() length = %d, want at least 24", len(password))
		}
		for _, c := range password {
			if !strings.ContainsRune(PasswordAlphabet, rune(c)) {
				t.Fatalf("GeneratePassword() contains %q, outside the alphabet", c)
			}
			used[c] = true
		}
		if seen[string(password)] {
			t.Fatal("GeneratePassword() repeated a password")
		}
		seen[string(password)] = true
	}
	// 32,000 draws miss a given character with probability ~1e-223, so a
	// missing one means the selection is broken, not unlucky.
	if len(used) != len(PasswordAlphabet) {
		t.Errorf("GeneratePassword() used %d of %d alphabet characters", len(used), len(PasswordAlphabet))
	}
}

func TestGeneratedPasswordIsAcceptedByBuild(t *testing.T) {
	password, err := GeneratePassword()
	if err != nil {
		t.Fatal(err)
	}
	defer clear(password)
	pki := newTestPKI(t, algECDSA)
	for _, kind := range []string{KindPKCS12, KindJKS} {
		if _, err := Build(pki.keyStoreInputs(t), kind, password, testAlias); err != nil {
			t.Errorf("Build(%s) with a generated password: %v", kind, err)
		}
	}
}

func TestReadPasswordFile(t *testing.T) {
	cases := []struct {
		name     string
		contents string
		want     string
	}{
		{"no newline", "s3cret", "s3cret"},
		{"LF", "s3cret\n", "s3cret"},
		{"CRLF", "s3cret\r\n", "s3cret"},
		{"several newlines", "s3cret\n\n", "s3cret"},
		{"spaces are part of the password", " s3 cret \n", " s3 cret "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTempFile(t, tc.contents)
			got, err := ReadPasswordFile(path)
			if err != nil {
				t.Fatalf("ReadPasswordFile() error = %v", err)
			}
			if !bytes.Equal(got, []byte(tc.want)) {
				t.Errorf("ReadPasswordFile() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadPasswordFileErrors(t *testing.T) {
	for _, contents := range []string{"", "\n", "\r\n"} {
		_, err := ReadPasswordFile(writeTempFile(t, contents))
		if !errors.Is(err, ErrInvalidPassword) || !strings.Contains(err.Error(), "empty") {
			t.Errorf("ReadPasswordFile(%q) error = %v, want an empty-password error", contents, err)
		}
	}
	_, err := ReadPasswordFile(filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadPasswordFile(missing) error = %v, want os.ErrNotExist", err)
	}
}

func writeTempFile(t *testing.T, contents string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestGeneratePasswordIsUniform catches modulo bias: with 320,000 draws each
// character is expected about 5,161 times (σ ≈ 71), so ±10% is over 7σ for an
// unbiased generator, while a naive byte%62 is off by about 25%.
func TestGeneratePasswordIsUniform(t *testing.T) {
	const samples = 10000
	counts := map[byte]int{}
	for range samples {
		password, err := GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range password {
			counts[c]++
		}
	}
	expected := float64(samples*GeneratedPasswordLength) / float64(len(PasswordAlphabet))
	for _, c := range []byte(PasswordAlphabet) {
		if deviation := float64(counts[c])/expected - 1; deviation > 0.10 || deviation < -0.10 {
			t.Errorf("character %q drawn %d times, expected about %.0f", c, counts[c], expected)
		}
	}
}
