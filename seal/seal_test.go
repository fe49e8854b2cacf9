package seal_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/seal"
)

const secret = "pw-s3cret-7f3a"

var content = messages.SealedContent{Project: "MyProject", Field: "password", Value: secret}

// keyFile writes a new key to dir/name and returns its public key.
func keyFile(t *testing.T, dir, name string) string {
	t.Helper()
	pub, err := seal.GenerateKeyFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func mustSeal(t *testing.T, recipient string, c messages.SealedContent) messages.Sealed {
	t.Helper()
	s, err := seal.Seal(recipient, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noSecret fails when err is nil or shows the secret.
func noSecret(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", want)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error shows the secret: %v", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to say %q", err, want)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pub := keyFile(t, dir, "k1.xk")
	ring, err := seal.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ring.Current() != pub || !ring.Has(pub) {
		t.Fatalf("current %s, want %s", ring.Current(), pub)
	}
	s := mustSeal(t, pub, content)
	if s.For != pub || !nkeys.IsValidPublicCurveKey(s.From) || s.From == pub {
		t.Errorf("sealed for %s from %s", s.For, s.From)
	}
	if strings.Contains(s.Box, secret) {
		t.Error("the box shows the secret")
	}
	if again := mustSeal(t, pub, content); again.From == s.From || again.Box == s.Box {
		t.Error("two seals share a sender key or a box")
	}
	got, err := ring.Open(s)
	if err != nil || got != content {
		t.Fatalf("Open: %+v, %v", got, err)
	}
	var _ messages.Opener = ring
	var _ messages.Opener = (*seal.DirKeys)(nil)
}

func TestSealRejectsBadRecipient(t *testing.T) {
	kp, _ := nkeys.CreateCurveKeys()
	seed, _ := kp.Seed()
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	for _, key := range []string{"", "XABC", string(seed), userPub, secret} {
		_, err := seal.Seal(key, content)
		if err == nil {
			t.Errorf("Seal(%q): no error", key)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, secret) || (len(seed) > 0 && strings.Contains(msg, string(seed[:10]))) {
			t.Errorf("error shows what was given: %v", err)
		}
	}
	_, err := seal.Seal(string(seed), content)
	noSecret(t, err, "a seed?")
}

func TestTamperedOrTruncated(t *testing.T) {
	dir := t.TempDir()
	pub := keyFile(t, dir, "k.xk")
	ring, err := seal.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSeal(t, pub, content)
	box, _ := base64.StdEncoding.DecodeString(s.Box)

	for _, at := range []int{5, 4 + 24 + 1, len(box) - 1} { // nonce, ciphertext, tag
		b := append([]byte(nil), box...)
		b[at] ^= 0x01
		tampered := s
		tampered.Box = base64.StdEncoding.EncodeToString(b)
		_, err := ring.Open(tampered)
		noSecret(t, err, "does not open with key "+pub+": corrupt, or sealed for another key")
	}
	for _, n := range []int{len(box) - 1, 4 + 24 + 16, 4 + 24, 3} {
		truncated := s
		truncated.Box = base64.StdEncoding.EncodeToString(box[:n])
		_, err := ring.Open(truncated)
		noSecret(t, err, "does not open with key "+pub)
	}
	other, _ := nkeys.CreateCurveKeys()
	otherPub, _ := other.PublicKey()
	fromOther := s
	fromOther.From = otherPub
	_, err = ring.Open(fromOther)
	noSecret(t, err, "does not open with key "+pub)

	badBase64 := s
	badBase64.Box = "%%%"
	_, err = ring.Open(badBase64)
	noSecret(t, err, "not standard base64")
	badFrom := s
	badFrom.From = "XNOTAKEY"
	_, err = ring.Open(badFrom)
	noSecret(t, err, `sender's key "XNOTAKEY" is not a public curve key`)
}

func TestWrongKey(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	pubA := keyFile(t, dirA, "a.xk")
	pubB := keyFile(t, dirB, "b.xk")
	ringB, err := seal.LoadDir(dirB)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSeal(t, pubA, content)
	_, err = ringB.Open(s)
	noSecret(t, err, "sealed for key "+pubA+", which this worker does not have")
	var unknown *seal.UnknownKeyError
	if !errors.As(err, &unknown) || unknown.Key != pubA {
		t.Errorf("%v is not an UnknownKeyError for %s", err, pubA)
	}
	// Claims to be for B, but was sealed for A.
	s.For = pubB
	_, err = ringB.Open(s)
	noSecret(t, err, "does not open with key "+pubB+": corrupt, or sealed for another key")
}

func TestNotASealedContent(t *testing.T) {
	dir := t.TempDir()
	pub := keyFile(t, dir, "k.xk")
	ring, err := seal.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{`"` + secret + `"`, `{"value":"` + secret + `","extra":1}`, `{"value":"` + secret + `"} {}`, secret} {
		sender, _ := nkeys.CreateCurveKeys()
		from, _ := sender.PublicKey()
		box, err := sender.Seal([]byte(plain), pub)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ring.Open(messages.Sealed{Box: base64.StdEncoding.EncodeToString(box), For: pub, From: from})
		noSecret(t, err, "opens with key "+pub+" but does not hold a sealed content")
	}
}

func TestKeyRemovedAfterSealing(t *testing.T) {
	dir := t.TempDir()
	old := keyFile(t, dir, "2026-11.xk")
	keyFile(t, dir, "2027-05.xk")
	keys, err := seal.NewDirKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSeal(t, old, content)
	if _, err := keys.Open(s); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "2026-11.xk")); err != nil {
		t.Fatal(err)
	}
	if err := keys.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err = keys.Open(s)
	noSecret(t, err, "sealed for key "+old+", which this worker does not have")
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	// Written in the other order: names decide, not times.
	newer := keyFile(t, dir, "2027-05.xk")
	older := keyFile(t, dir, "2026-11.xk")
	ring, err := seal.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ring.Current() != newer {
		t.Errorf("current %s, want %s (the last name)", ring.Current(), newer)
	}
	if got := ring.Publics(); len(got) != 2 || got[0] != older || got[1] != newer {
		t.Errorf("Publics %v", got)
	}
	for _, pub := range []string{older, newer} {
		if got, err := ring.Open(mustSeal(t, pub, content)); err != nil || got != content {
			t.Errorf("sealed for %s: %+v, %v", pub, got, err)
		}
	}
}

// TestKubernetesSecretMount loads a directory laid out as a mounted Secret: each key a
// link into ..data, itself a link to a timestamped directory.
func TestKubernetesSecretMount(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_11_22_06_51_59.123")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	a := keyFile(t, data, "a.xk")
	b := keyFile(t, data, "b.xk")
	for _, link := range [][2]string{{filepath.Base(data), "..data"}, {"..data/a.xk", "a.xk"}, {"..data/b.xk", "b.xk"}} {
		if err := os.Symlink(link[0], filepath.Join(dir, link[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "z-subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".hidden"), []byte("not a seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	ring, err := seal.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := ring.Publics(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("Publics %v, want [%s %s]", got, a, b)
	}
}

func TestLoadDirErrors(t *testing.T) {
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, ".only-hidden"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := seal.LoadDir(empty)
	noSecret(t, err, "no key files in "+empty)

	_, err = seal.LoadDir(filepath.Join(empty, "missing"))
	noSecret(t, err, "missing")

	bad := t.TempDir()
	keyFile(t, bad, "a.xk")
	if err := os.WriteFile(filepath.Join(bad, "b.xk"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = seal.LoadDir(bad)
	noSecret(t, err, filepath.Join(bad, "b.xk")+": not a curve seed")

	// A user's seed is a seed, but not a curve seed.
	user, _ := nkeys.CreateUser()
	userSeed, _ := user.Seed()
	if err := os.WriteFile(filepath.Join(bad, "b.xk"), userSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = seal.LoadDir(bad)
	noSecret(t, err, "b.xk: not a curve seed")
	if strings.Contains(err.Error(), string(userSeed[2:12])) {
		t.Errorf("error shows the seed: %v", err)
	}

	if err := os.WriteFile(filepath.Join(bad, "b.xk"), []byte(strings.Repeat("S", 5000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = seal.LoadDir(bad)
	noSecret(t, err, "too large for a curve seed")
}

func TestNewKeyring(t *testing.T) {
	a, _ := nkeys.CreateCurveKeys()
	b, _ := nkeys.CreateCurveKeys()
	seedA, _ := a.Seed()
	seedB, _ := b.Seed()
	pubA, _ := a.PublicKey()
	pubB, _ := b.PublicKey()
	ring, err := seal.NewKeyring(seedB, seedA, append([]byte("  "), append(seedB, '\n')...))
	if err != nil {
		t.Fatal(err)
	}
	if got := ring.Publics(); len(got) != 2 || got[0] != pubA || got[1] != pubB {
		t.Errorf("Publics %v, want [%s %s]", got, pubA, pubB)
	}
	if _, err := seal.NewKeyring(); err == nil {
		t.Error("a keyring without keys")
	}
	if _, err := seal.NewKeyring(seedA, []byte(secret)); err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "seed 2") {
		t.Errorf("bad seed: %v", err)
	}
}

// clock is a settable clock for DirKeys.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestReloadOnUnknownKeyRateLimit(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	first := keyFile(t, dir, "2026-11.xk")
	clk := &clock{now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	keys, err := seal.NewDirKeys(dir, seal.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	keys.OnChange(func(current string) { changes = append(changes, current) })

	// A publisher seals for a key the worker has not read yet: it is read at once.
	second := keyFile(t, dir, "2027-05.xk")
	if got, err := keys.Open(mustSeal(t, second, content)); err != nil || got != content {
		t.Fatalf("Open for a key just added: %+v, %v", got, err)
	}
	if keys.Current() != second || len(changes) != 1 || changes[0] != second {
		t.Errorf("current %s, changes %v; want %s", keys.Current(), changes, second)
	}

	// A key the directory does not have: read once, then not again within 5s.
	pub := keyFile(t, elsewhere, "2028-01.xk")
	s := mustSeal(t, pub, content)
	clk.Add(seal.UnknownKeyReload)
	_, err = keys.Open(s)
	noSecret(t, err, "sealed for key "+pub+", which this worker does not have")
	if err := os.Rename(filepath.Join(elsewhere, "2028-01.xk"), filepath.Join(dir, "2028-01.xk")); err != nil {
		t.Fatal(err)
	}
	clk.Add(seal.UnknownKeyReload - time.Second)
	_, err = keys.Open(s)
	noSecret(t, err, "which this worker does not have")
	if keys.Current() != second {
		t.Errorf("reloaded within %v", seal.UnknownKeyReload)
	}
	clk.Add(time.Second)
	if got, err := keys.Open(s); err != nil || got != content {
		t.Fatalf("Open after %v: %+v, %v", seal.UnknownKeyReload, got, err)
	}
	if keys.Current() != pub || len(changes) != 2 {
		t.Errorf("current %s, changes %v", keys.Current(), changes)
	}
	// Keys the worker holds never cause a read.
	if got, err := keys.Open(mustSeal(t, first, content)); err != nil || got != content {
		t.Errorf("the oldest key: %+v, %v", got, err)
	}
}

func TestReloadKeepsPreviousKeys(t *testing.T) {
	dir := t.TempDir()
	pub := keyFile(t, dir, "a.xk")
	keys, err := seal.NewDirKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	changed := false
	keys.OnChange(func(string) { changed = true })
	if err := keys.Reload(); err != nil || changed {
		t.Fatalf("Reload of the same keys: %v, changed %v", err, changed)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.xk"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	noSecret(t, keys.Reload(), "b.xk: not a curve seed")
	if keys.Current() != pub || changed {
		t.Errorf("current %s after a failed reload, want %s", keys.Current(), pub)
	}
	if _, err := keys.Open(mustSeal(t, pub, content)); err != nil {
		t.Error(err)
	}
	if _, err := seal.NewDirKeys(t.TempDir()); err == nil {
		t.Error("NewDirKeys of an empty directory")
	}
}

func TestDirKeysConcurrent(t *testing.T) {
	dir := t.TempDir()
	pub := keyFile(t, dir, "a.xk")
	keys, err := seal.NewDirKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := mustSeal(t, pub, content)
	unknown := mustSeal(t, keyFile(t, t.TempDir(), "x.xk"), content)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				if i%4 == 0 {
					_ = keys.Reload()
				}
				if _, err := keys.Open(s); err != nil {
					t.Error(err)
				}
				if _, err := keys.Open(unknown); err == nil {
					t.Error("opened a value for a key not held")
				}
				_ = keys.Current()
			}
		})
	}
	wg.Wait()
}

func TestGenerateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.xk")
	pub, err := seal.GenerateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := seal.CheckPublicKey(pub); err != nil {
		t.Error(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	seed, _ := os.ReadFile(path)
	ring, err := seal.NewKeyring(seed)
	if err != nil || ring.Current() != pub {
		t.Fatalf("the file holds %v, %v; want the seed of %s", ring, err, pub)
	}

	_, err = seal.GenerateKeyFile(path)
	noSecret(t, err, "exists: not overwriting it")
	if again, _ := os.ReadFile(path); string(again) != string(seed) {
		t.Error("the file was changed")
	}
	if _, err := seal.GenerateKeyFile(filepath.Join(t.TempDir(), "missing", "k.xk")); err == nil {
		t.Error("no error for a missing directory")
	}
}
