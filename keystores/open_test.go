package keystores

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

// The keytool-made fixtures in testdata/keystores (password changeit) stand for the
// files operators bring; the files made here stand for those with dates that matter.
const fixturePassword = "changeit"

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("../testdata/keystores/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// randomFile is 700 KB of random bytes, the same on every run.
func randomFile() []byte {
	data := make([]byte, 700<<10)
	_, _ = rand.NewChaCha8([32]byte{'a', 'p', 'i', 'o', 'p', 's'}).Read(data)
	return data
}

// openCase is one file that must not open, and what the error must say.
type openCase struct {
	name          string
	file          []byte
	kind          string
	password      string
	wantErr       error
	wantInMessage []string
}

func openCases(t *testing.T) []openCase {
	pki := newTestPKI(t, algECDSA)
	p12 := mustBuild(t, pki.keyStoreInputs(t), KindPKCS12)
	jks := mustBuild(t, pki.keyStoreInputs(t), KindJKS)
	jceks := append([]byte{0xce, 0xce, 0xce, 0xce}, jks[4:]...)
	truncated := p12[:len(p12)/2]
	return []openCase{
		{"PKCS12, wrong password", readFixture(t, "client-2026.p12"), KindPKCS12, "n0t-changeit-71f", ErrWrongPassword, []string{"password does not open this PKCS12 keystore"}},
		{"built PKCS12, wrong password", p12, KindPKCS12, "Wr0ng-pKcs12-9d2e", ErrWrongPassword, nil},
		{"PKCS12 truststore, wrong password", readFixture(t, "trust-2027.p12"), KindPKCS12, "Wr0ng-pKcs12-9d2e", ErrWrongPassword, nil},
		{"JKS, wrong password", readFixture(t, "client-2026.jks"), KindJKS, "n0t-changeit-71f", ErrWrongPassword, []string{"password does not open this JKS keystore"}},
		{"built JKS, wrong password", jks, KindJKS, "Wr0ng-jks-4b7c", ErrWrongPassword, nil},
		{"PKCS12 declared JKS", readFixture(t, "client-2026.p12"), KindJKS, fixturePassword, ErrWrongType, []string{"is a PKCS12 keystore, declared JKS", "set keyStoreType to PKCS12"}},
		{"JKS declared PKCS12", readFixture(t, "client-2026.jks"), KindPKCS12, fixturePassword, ErrWrongType, []string{"is a JKS keystore, declared PKCS12", "set keyStoreType to JKS"}},
		{"JCEKS", jceks, KindJKS, fixturePassword, ErrWrongType, []string{"JCEKS"}},
		{"700 KB of random bytes", randomFile(), KindPKCS12, fixturePassword, ErrNotKeystore, []string{"neither PKCS12 nor JKS"}},
		{"random bytes declared JKS", randomFile()[:4096], KindJKS, fixturePassword, ErrNotKeystore, nil},
		{"PEM text", pki.chainPEM(), KindPKCS12, fixturePassword, ErrNotKeystore, []string{"PEM text"}},
		{"base64 twice", []byte(base64.StdEncoding.EncodeToString(p12)), KindPKCS12, string(testPassword), ErrNotKeystore, []string{"base64-encoded twice"}},
		{"truncated PKCS12", truncated, KindPKCS12, string(testPassword), ErrNotKeystore, []string{"damaged or truncated"}},
		{"truncated JKS", jks[:len(jks)-30], KindJKS, string(testPassword), ErrNotKeystore, []string{"damaged or truncated"}},
		{"JKS claiming a 4 GiB certificate", hugeJKSCertificate(), KindJKS, fixturePassword, ErrNotKeystore, []string{"past the end"}},
		{"JKS key with a password of its own", jksWithKeyPassword(t, pki, "other-key-password"), KindJKS, string(testPassword), ErrWrongPassword, []string{`entry "gateway-tls"`, "key password of its own"}},
		{"unknown kind", p12, "PEM", fixturePassword, ErrUnknownKind, nil},
	}
}

func TestOpenRefusesWhatAPIOpsWouldRefuse(t *testing.T) {
	for _, tc := range openCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.file, tc.kind, []byte(tc.password))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open() error = %v, want errors.Is %v", err, tc.wantErr)
			}
			for _, want := range tc.wantInMessage {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open() error = %q, want it to mention %q", err, want)
				}
			}
		})
	}
}

func TestOpenReadsKeytoolAndBuiltKeystores(t *testing.T) {
	pki := newTestPKI(t, algRSA)
	trust := Inputs{CAs: certificatesPEM(pki.root, pki.intermediate)}
	cases := []struct {
		name             string
		file             []byte
		kind, password   string
		wantKeys, wantCs int
	}{
		{"keytool PKCS12 keystore", readFixture(t, "client-2026.p12"), KindPKCS12, fixturePassword, 1, 1},
		{"keytool JKS keystore", readFixture(t, "client-2026.jks"), KindJKS, fixturePassword, 1, 1},
		{"keytool PKCS12 truststore", readFixture(t, "trust-2027.p12"), KindPKCS12, fixturePassword, 0, 1},
		{"keytool JKS truststore", readFixture(t, "trust-2027.jks"), KindJKS, fixturePassword, 0, 1},
		{"built PKCS12 keystore", mustBuild(t, pki.keyStoreInputs(t), KindPKCS12), KindPKCS12, string(testPassword), 1, 3},
		{"built JKS keystore", mustBuild(t, pki.keyStoreInputs(t), KindJKS), "jks", string(testPassword), 1, 3},
		{"built PKCS12 truststore", mustBuild(t, trust, KindPKCS12), KindPKCS12, string(testPassword), 0, 2},
		{"built JKS truststore", mustBuild(t, trust, KindJKS), KindJKS, string(testPassword), 0, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(tc.file, tc.kind, []byte(tc.password))
			if err != nil {
				t.Fatalf("Open() error = %v", err)
			}
			if c.PrivateKeys != tc.wantKeys || len(c.Certificates) != tc.wantCs || c.Unlisted != "" {
				t.Errorf("Open() = %d keys, %d certificates, unlisted %q; want %d, %d, \"\"", c.PrivateKeys, len(c.Certificates), c.Unlisted, tc.wantKeys, tc.wantCs)
			}
		})
	}
}

func TestCheckFileKeyAndDates(t *testing.T) {
	now := time.Now()
	expiring := newTestPKI(t, algECDSA, withLeafValidity(validity{now.Add(-300 * day), now.Add(10 * day)}))
	expired := newTestPKI(t, algECDSA, withLeafValidity(validity{now.Add(-400 * day), now.Add(-day)}))
	future := newTestPKI(t, algECDSA, withLeafValidity(validity{now.Add(day), now.Add(400 * day)}))
	valid := newTestPKI(t, algECDSA, withLeafValidity(validity{now.Add(-day), now.Add(400 * day)}),
		withIntermediateValidity(validity{now.Add(-day), now.Add(800 * day)}), withRootValidity(validity{now.Add(-day), now.Add(900 * day)}))
	truststore := Inputs{CAs: certificatesPEM(valid.root)}
	for _, kind := range []string{KindPKCS12, KindJKS} {
		t.Run(kind, func(t *testing.T) {
			check := func(in Inputs, needKey bool) ([]string, error) {
				return CheckFile(mustBuild(t, in, kind), kind, testPassword, needKey, now)
			}
			if w, err := check(valid.keyStoreInputs(t), true); err != nil || len(w) != 0 {
				t.Errorf("valid keystore: warnings %q, error %v", w, err)
			}
			if w, err := check(truststore, false); err != nil || len(w) != 0 {
				t.Errorf("truststore used as one: warnings %q, error %v", w, err)
			}
			if _, err := check(truststore, true); !errors.Is(err, ErrNoPrivateKey) {
				t.Errorf("truststore where a key is needed: error %v, want %v", err, ErrNoPrivateKey)
			}
			if _, err := check(expired.keyStoreInputs(t), true); !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), "CN="+leafCN) {
				t.Errorf("expired leaf: error %v, want %v naming the leaf", err, ErrExpired)
			}
			if _, err := check(future.keyStoreInputs(t), true); !errors.Is(err, ErrNotYetValid) {
				t.Errorf("leaf valid from tomorrow: error %v, want %v", err, ErrNotYetValid)
			}
			w, err := check(expiring.keyStoreInputs(t), true)
			// 10 days less the sub-second part that certificate dates drop.
			if err != nil || len(w) != 1 || !strings.Contains(w[0], "expires in 9 days") && !strings.Contains(w[0], "expires in 10 days") || !strings.Contains(w[0], "CN="+leafCN) {
				t.Errorf("leaf expiring in 10 days: warnings %q, error %v; want one warning naming it", w, err)
			}
		})
	}
}

func TestOpenRefusesAnExpensiveMAC(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	pfx, err := pkcs12.Modern.WithIterations(1<<16).EncodeTrustStoreEntries(
		[]pkcs12.TrustStoreEntry{{Cert: pki.root, FriendlyName: "ca"}}, string(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	// The MAC's iteration count ends the file: INTEGER 65536, made 8,388,607.
	tail := pfx[len(pfx)-5:]
	if !bytes.Equal(tail, []byte{0x02, 0x03, 0x01, 0x00, 0x00}) {
		t.Fatalf("the file does not end with its MAC iterations: % x", tail)
	}
	copy(tail[2:], []byte{0x7f, 0xff, 0xff})
	if _, err := Open(pfx, KindPKCS12, testPassword); !errors.Is(err, ErrUnsupportedKeystore) {
		t.Fatalf("Open() error = %v, want %v", err, ErrUnsupportedKeystore)
	}
}

// hugeJKSCertificate is a JKS file whose one trusted entry claims a certificate of
// almost 4 GiB.
func hugeJKSCertificate() []byte {
	var b bytes.Buffer
	for _, v := range []uint32{jksMagic, 2, 1, 2} { // magic, version, one entry, trusted
		_ = binary.Write(&b, binary.BigEndian, v)
	}
	_ = binary.Write(&b, binary.BigEndian, uint16(2))
	b.WriteString("ca")
	_ = binary.Write(&b, binary.BigEndian, uint64(0)) // creation time
	_ = binary.Write(&b, binary.BigEndian, uint16(5))
	b.WriteString("X.509")
	_ = binary.Write(&b, binary.BigEndian, uint32(0xfffffff0))
	b.Write(make([]byte, 64))
	return b.Bytes()
}

// jksWithKeyPassword is a JKS keystore protected by testPassword whose key entry is
// protected by keyPassword, which Java allows and APIOps cannot use.
func jksWithKeyPassword(t *testing.T, pki testPKI, keyPassword string) []byte {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(pki.leafKey)
	if err != nil {
		t.Fatal(err)
	}
	ks := keystore.New()
	entry := keystore.PrivateKeyEntry{CreationTime: time.Now(), PrivateKey: keyDER,
		CertificateChain: jksCertificates([]*x509.Certificate{pki.leaf, pki.intermediate})}
	if err := ks.SetPrivateKeyEntry(testAlias, entry, []byte(keyPassword)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ks.Store(&out, testPassword); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestOpenErrorsNeverContainTheFileOrPassword follows TestErrorsNeverContainKeyMaterial:
// no message echoes the password or any part of the file, raw, hex or base64.
func TestOpenErrorsNeverContainTheFileOrPassword(t *testing.T) {
	var messages []string
	var secrets []string
	for _, tc := range openCases(t) {
		if _, err := Open(tc.file, tc.kind, []byte(tc.password)); err != nil {
			messages = append(messages, err.Error())
		}
		if _, err := CheckFile(tc.file, tc.kind, []byte(tc.password), true, time.Now()); err != nil {
			messages = append(messages, err.Error())
		}
		secrets = append(secrets, fileFragments(tc.file)...)
		if tc.password != fixturePassword { // "changeit" is a word an error may well use
			secrets = append(secrets, tc.password)
		}
	}
	secrets = append(secrets, string(testPassword))
	if len(messages) < 30 {
		t.Fatalf("only %d error messages collected; the test lost its inputs", len(messages))
	}
	for _, msg := range messages {
		for _, secret := range secrets {
			if strings.Contains(msg, secret) {
				t.Errorf("error contains secret fragment %q: %q", secret, msg)
			}
		}
	}
}

// fileFragments returns overlapping 12-byte windows of the start and end of a file,
// raw and hex, and 16-character windows of its base64; the keystore formats' fixed
// magic numbers and headers are too short to count.
func fileFragments(file []byte) []string {
	const window = 12
	part := file
	if len(part) > 2048 {
		part = append(append([]byte(nil), file[:1024]...), file[len(file)-1024:]...)
	}
	var fragments []string
	for i := 0; i+window <= len(part); i += window / 2 {
		fragments = append(fragments, string(part[i:i+window]), hex.EncodeToString(part[i:i+window]))
	}
	encoded := base64.StdEncoding.EncodeToString(part)
	for i := 0; i+16 <= len(encoded); i += 16 {
		fragments = append(fragments, encoded[i:i+16])
	}
	return fragments
}

// TestOpenLeavesUnreadableLayoutsToAPIOps: a file this checker cannot read but APIOps
// may (BER lengths, a JKS password beyond Latin-1) passes with a warning rather than
// being refused.
func TestOpenLeavesUnreadableLayoutsToAPIOps(t *testing.T) {
	pki := newTestPKI(t, algECDSA)
	ber := append([]byte{0x30, 0x80, 0x02, 0x01, 0x03}, make([]byte, 32)...)
	jks := mustBuild(t, pki.keyStoreInputs(t), KindJKS)
	for name, tc := range map[string]struct {
		file     []byte
		kind     string
		password string
	}{
		"BER PKCS12":                  {ber, KindPKCS12, string(testPassword)},
		"JKS password beyond Latin-1": {jks, KindJKS, "пароль"},
	} {
		warnings, err := CheckFile(tc.file, tc.kind, []byte(tc.password), true, testNow)
		if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "not all read") {
			t.Errorf("%s: warnings %q, error %v; want one warning that the entries went unread", name, warnings, err)
		}
	}
}
