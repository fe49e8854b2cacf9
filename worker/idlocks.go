package worker

import "sync"

// idLocks serialise the commands of one id within the process: two messages with one
// id (published twice, an invalid copy) never run at once, whatever their resources,
// so the second finds the first's outcome.
type idLocks struct {
	mu    sync.Mutex
	byKey map[string]*idLock // while a command with the id runs or waits
}

// idLock is one id's lock and how many commands hold or wait for it.
type idLock struct {
	sync.Mutex
	users int
}

func newIDLocks() *idLocks { return &idLocks{byKey: make(map[string]*idLock)} }

// lock waits until no other command with id runs, and returns the unlock.
func (l *idLocks) lock(id string) (unlock func()) {
	l.mu.Lock()
	one := l.byKey[id]
	if one == nil {
		one = &idLock{}
		l.byKey[id] = one
	}
	one.users++
	l.mu.Unlock()
	one.Lock()
	return func() {
		one.Unlock()
		l.mu.Lock()
		if one.users--; one.users == 0 {
			delete(l.byKey, id)
		}
		l.mu.Unlock()
	}
}
