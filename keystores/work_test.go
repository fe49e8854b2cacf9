package keystores

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/apiops-worker/apiops-worker/messages"
)

// openBound is how long refusing a file, or a command, may take: opening one at the
// counts below would take seconds to minutes. A functional bound, not a benchmark.
const openBound = 2 * time.Second

// buildIterations is what the test files are built with: an INTEGER of three bytes
// (02 03 01 01 01), which patchIterations turns into 8,388,607 without moving a byte.
const buildIterations = 0x010101

// DER of the object identifiers an iteration count follows.
var (
	derPBMAC1        = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0e}
	derEncryptedData = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06}
	derShroudedKey   = []byte{0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02}
)

// patchIterations returns a copy of pfx whose first iteration count after the
// object identifier after is 8,388,607.
func patchIterations(t *testing.T, pfx, after []byte) []byte {
	t.Helper()
	pfx = bytes.Clone(pfx)
	at := bytes.Index(pfx, after)
	if at < 0 {
		t.Fatalf("the file has no % x", after)
	}
	count := []byte{0x02, 0x03, 0x01, 0x01, 0x01}
	i := bytes.Index(pfx[at:], count)
	if i < 0 {
		t.Fatalf("no iteration count %d follows % x", buildIterations, after)
	}
	copy(pfx[at+i+2:], []byte{0x7f, 0xff, 0xff})
	return pfx
}

// TestOpenRefusesHugeIterationCountsWherever: an iteration count over the limit is
// refused before any key is derived, wherever go-pkcs12 would find it: PBMAC1's PBKDF2
// (which go-pkcs12 takes instead of MacData.iterations), an encryptedData safe under
// PBES2 or a PKCS#12 PBE, a shrouded key bag. Each is refused fast, and the file as
// built (a count within the limit) still opens.
func TestOpenRefusesHugeIterationCountsWherever(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	keystore := func(enc *pkcs12.Encoder) []byte {
		pfx, err := enc.WithIterations(buildIterations).Encode(pki.leafKey, pki.leaf, []*x509.Certificate{pki.intermediate, pki.root}, string(testPassword))
		if err != nil {
			t.Fatal(err)
		}
		return pfx
	}
	truststore := func(enc *pkcs12.Encoder) []byte {
		pfx, err := enc.WithIterations(buildIterations).EncodeTrustStoreEntries(
			[]pkcs12.TrustStoreEntry{{Cert: pki.root, FriendlyName: "ca"}}, string(testPassword))
		if err != nil {
			t.Fatal(err)
		}
		return pfx
	}
	cases := []struct {
		name  string
		file  []byte
		after []byte
		where string
	}{
		{"PBMAC1", keystore(pkcs12.Modern2026), derPBMAC1, "its MAC"},
		{"PBES2 encrypted contents", truststore(pkcs12.Modern2023), derEncryptedData, "its encrypted contents"},
		{"PKCS12 PBE encrypted contents", keystore(pkcs12.LegacyDES), derEncryptedData, "its encrypted contents"},
		{"PBES2 shrouded key", keystore(pkcs12.Modern2023), derShroudedKey, "a shrouded private key"},
		{"PKCS12 PBE shrouded key", keystore(pkcs12.LegacyRC2), derShroudedKey, "a shrouded private key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(tc.file, KindPKCS12, testPassword); err != nil {
				t.Fatalf("the file as built: Open() error = %v", err)
			}
			patched := patchIterations(t, tc.file, tc.after)
			start := time.Now()
			_, err := Open(patched, KindPKCS12, testPassword)
			if took := time.Since(start); took > openBound {
				t.Errorf("Open() took %v, more than %v", took, openBound)
			}
			if !errors.Is(err, ErrUnsupportedKeystore) {
				t.Fatalf("Open() error = %v, want %v", err, ErrUnsupportedKeystore)
			}
			for _, want := range []string{tc.where, "8388607", fmt.Sprint(maxIterations)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open() error %q does not name %q", err, want)
				}
			}
			if openingCost(patched, KindPKCS12) != 0 {
				t.Error("a refused file counts towards the command's budget")
			}
		})
	}
}

// TestEncodersStayWithinTheLimits: the files that Build, Java, OpenSSL and
// go-pkcs12's encoders write are far from the limits.
func TestEncodersStayWithinTheLimits(t *testing.T) {
	pki := newTestPKI(t, algRSA)
	built := mustBuild(t, pki.keyStoreInputs(t), KindPKCS12)
	files := map[string][]byte{"Build": built, "keytool": readFixture(t, "client-2026.p12"), "keytool truststore": readFixture(t, "trust-2027.p12")}
	for name, enc := range map[string]*pkcs12.Encoder{"Modern2026": pkcs12.Modern2026, "Modern2023": pkcs12.Modern2023, "LegacyDES": pkcs12.LegacyDES, "LegacyRC2": pkcs12.LegacyRC2} {
		pfx, err := enc.Encode(pki.leafKey, pki.leaf, nil, string(testPassword))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = pfx
	}
	for name, file := range files {
		var outline pfxOutline
		if _, err := asn1.Unmarshal(file, &outline); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		work := outline.work()
		if work.refusal() != nil || work.largest > maxIterations/16 || work.total > maxCommandIterations/16 {
			t.Errorf("%s: largest count %d (%s), %d in all; too close to the limits", name, work.largest, work.largestWhere, work.total)
		}
		if work.total == 0 {
			t.Errorf("%s: no iteration count found", name)
		}
	}
}

// TestCheckCommandBoundsTheWorkOfManyFiles: a command holding many copies of a file
// that is costly to open but within the limit opens it once; as many distinct such
// files are refused together, before any is opened, naming the list.
func TestCheckCommandBoundsTheWorkOfManyFiles(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	costly := func() []byte {
		// MAC and encrypted contents at 2^17 each: the most a file may ask for in all
		// is a quarter of the command's budget.
		pfx, err := pkcs12.Modern2023.WithIterations(maxIterations/2).EncodeTrustStoreEntries(
			[]pkcs12.TrustStoreEntry{{Cert: pki.root, FriendlyName: "ca"}}, string(testPassword))
		if err != nil {
			t.Fatal(err)
		}
		return pfx
	}
	file := costly()
	if cost := openingCost(file, KindPKCS12); cost != maxIterations {
		t.Fatalf("openingCost() = %d, want %d", cost, maxIterations)
	}
	var copies []map[string]any
	for i := range 200 {
		copies = append(copies, environment(fmt.Sprintf("env-%d", i), file, KindPKCS12, string(testPassword)))
	}
	start := time.Now()
	if w, err := CheckCommand(decodeLine(t, keystoreCreate("trust-2030", copies...)), time.Now()); err != nil || len(w) != 0 {
		t.Fatalf("200 copies of one file: warnings %q, error %v", w, err)
	}
	if took := time.Since(start); took > openBound {
		t.Errorf("200 copies of one file took %v, more than %v", took, openBound)
	}

	var distinct []map[string]any
	for i := range 5 {
		distinct = append(distinct, environment(fmt.Sprintf("env-%d", i), costly(), KindPKCS12, string(testPassword)))
	}
	if _, err := CheckCommand(decodeLine(t, keystoreCreate("trust-2030", distinct[:4]...)), time.Now()); err != nil {
		t.Fatalf("4 distinct files, the budget's worth: %v", err)
	}
	start = time.Now()
	_, err := CheckCommand(decodeLine(t, keystoreCreate("trust-2030", distinct...)), time.Now())
	if took := time.Since(start); took > openBound/4 {
		t.Errorf("refusing 5 distinct files took %v, more than %v: were they opened?", took, openBound/4)
	}
	var fileErr *FileError
	if !errors.As(err, &fileErr) || !errors.Is(err, ErrUnsupportedKeystore) {
		t.Fatalf("5 distinct files: error %v, want a *FileError that is %v", err, ErrUnsupportedKeystore)
	}
	rejection := fileErr.Rejection()
	if fileErr.Field != "params.keyStoreEnvironmentList" || rejection.Field != fileErr.Field || rejection.Code != messages.CodeInvalidCommand ||
		!strings.Contains(rejection.Message, "together") || strings.Contains(rejection.Message, "(environment") {
		t.Errorf("Rejection() = %+v", rejection)
	}

	// The budget spans a plan's steps; the list named is where it went over.
	step := func(name string, envs ...map[string]any) map[string]any {
		return map[string]any{"type": "keystore.create", "params": map[string]any{"name": name, "keyStoreEnvironmentList": envs}}
	}
	plan := map[string]any{"id": "p-1", "type": "plan", "project": "MyProject", "steps": []any{
		step("a", distinct[:3]...), step("b", distinct[3:]...)}}
	_, err = CheckCommand(decodeLine(t, plan), time.Now())
	if !errors.As(err, &fileErr) || fileErr.Field != "steps[1].params.keyStoreEnvironmentList" {
		t.Errorf("plan over the budget: error %v, want the field steps[1].params.keyStoreEnvironmentList", err)
	}
}
