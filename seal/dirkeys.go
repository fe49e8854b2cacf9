package seal

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

// UnknownKeyReload is how often, at most, DirKeys.Open re-reads the directory because
// a value names a key it does not hold.
const UnknownKeyReload = 5 * time.Second

// DirKeys is a worker's keys as a directory holds them (see LoadDir): a Keyring that
// Reload replaces with what the directory holds now. It is a messages.Opener, and safe
// for concurrent use.
//
// Caveats:
//   - DirKeys does not watch the directory: call Reload periodically (the worker does
//     every minute). Open re-reads it at once when a value names a key it does not
//     hold, at most every UnknownKeyReload; a value sealed for a new key within that
//     time after such a re-read fails to open (a rejection, not a retry).
//   - A directory that cannot be read, or holds a file that is not a seed, keeps the
//     keys loaded before; Reload returns why.
//   - Keys that Reload drops are not wiped: an Open running at the time may still be
//     using them. Go's garbage collector may leave copies of seeds and of opened values.
type DirKeys struct {
	dir string
	now func() time.Time

	ring atomic.Pointer[Keyring]

	mu           sync.Mutex // serializes reloads and OnChange calls
	lastUnknown  time.Time  // the last reload for an unknown key
	onChange     []func(current string)
	reloadedOnce bool
}

// DirKeysOption configures DirKeys.
type DirKeysOption func(*DirKeys)

// WithClock sets the clock that DirKeys limits re-reads for unknown keys by (time.Now
// by default), for tests.
func WithClock(now func() time.Time) DirKeysOption {
	return func(d *DirKeys) { d.now = now }
}

// NewDirKeys loads the keys in dir (see LoadDir). It fails when they cannot be loaded.
func NewDirKeys(dir string, opts ...DirKeysOption) (*DirKeys, error) {
	d := &DirKeys{dir: dir, now: time.Now}
	for _, opt := range opts {
		opt(d)
	}
	ring, err := LoadDir(dir)
	if err != nil {
		return nil, err
	}
	d.ring.Store(ring)
	return d, nil
}

// Dir returns the directory the keys are read from.
func (d *DirKeys) Dir() string { return d.dir }

// Keyring returns the keys loaded last.
func (d *DirKeys) Keyring() *Keyring { return d.ring.Load() }

// Current returns the public key of the current key (see Keyring.Current).
func (d *DirKeys) Current() string { return d.ring.Load().Current() }

// DigestKey returns a digest key of the keys loaded last (see Keyring.DigestKey).
func (d *DirKeys) DigestKey(pub string) (key []byte, id string, ok bool) {
	return d.ring.Load().DigestKey(pub)
}

// Publics returns the public keys loaded, the current one last.
func (d *DirKeys) Publics() []string { return d.ring.Load().Publics() }

// OnChange registers fn to be called with the new current key whenever a reload
// changes it, e.g. to announce it again. Calls are made one at a time, in order, on
// the goroutine that reloaded (a Reload, or an Open that found an unknown key): fn must
// return soon, and must not call Reload.
func (d *DirKeys) OnChange(fn func(current string)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onChange = append(d.onChange, fn)
}

// Reload re-reads the directory. When that fails, the keys loaded before stay and the
// error says why.
func (d *DirKeys) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reloadLocked()
}

func (d *DirKeys) reloadLocked() error {
	ring, err := LoadDir(d.dir)
	if err != nil {
		return err
	}
	before := d.ring.Swap(ring)
	if current := ring.Current(); current != before.Current() {
		for _, fn := range d.onChange {
			fn(current)
		}
	}
	return nil
}

// Open opens a sealed value with the keys loaded (see Keyring.Open). When the value
// names a key they do not hold, Open re-reads the directory, at most every
// UnknownKeyReload, and tries again.
func (d *DirKeys) Open(s messages.Sealed) (messages.SealedContent, error) {
	ring := d.ring.Load()
	c, err := ring.Open(s)
	var unknown *UnknownKeyError
	if !errors.As(err, &unknown) {
		return c, err
	}
	if d.reloadForUnknown(ring) {
		return d.ring.Load().Open(s)
	}
	return c, err
}

// reloadForUnknown re-reads the directory for a key that ring lacks, unless it was
// re-read for that reason less than UnknownKeyReload ago, and reports whether the keys
// may have changed since ring.
func (d *DirKeys) reloadForUnknown(ring *Keyring) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ring.Load() != ring {
		return true // reloaded while this Open waited
	}
	now := d.now()
	if d.reloadedOnce && now.Sub(d.lastUnknown) < UnknownKeyReload && now.Sub(d.lastUnknown) >= 0 {
		return false
	}
	d.lastUnknown, d.reloadedOnce = now, true
	return d.reloadLocked() == nil
}
