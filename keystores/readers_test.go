package keystores

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestToolsOpenTheKeystores: the keystores open in the tools operators use, openssl
// and keytool, where they are installed (CI's image has both; elsewhere the test says
// it skips).
func TestToolsOpenTheKeystores(t *testing.T) {
	pki := newTestPKI(t, algRSA)
	password := []byte("a-test-password-1234")
	dir := t.TempDir()
	passFile := filepath.Join(dir, "pass")
	if err := os.WriteFile(passFile, password, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind, tool string
		args       func(file string) []string
		want       string
	}{
		{KindPKCS12, "openssl", func(f string) []string {
			return []string{"pkcs12", "-in", f, "-passin", "file:" + passFile, "-nokeys", "-info"}
		}, "BEGIN CERTIFICATE"},
		{KindPKCS12, "keytool", func(f string) []string {
			return []string{"-list", "-storetype", "PKCS12", "-keystore", f, "-storepass", string(password)}
		}, "PrivateKeyEntry"},
		{KindJKS, "keytool", func(f string) []string {
			return []string{"-list", "-storetype", "JKS", "-keystore", f, "-storepass", string(password)}
		}, "PrivateKeyEntry"},
	} {
		t.Run(tc.kind+" in "+tc.tool, func(t *testing.T) {
			path, err := exec.LookPath(tc.tool)
			if err != nil {
				t.Skipf("%s is not installed", tc.tool)
			}
			data, err := Build(pki.keyStoreInputs(t), tc.kind, password, "gateway")
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, strings.ToLower(tc.kind))
			if err := os.WriteFile(file, data, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(path, tc.args(file)...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("%s does not open the %s keystore: %v\n%s", tc.tool, tc.kind, err, out)
			}
		})
	}
}
