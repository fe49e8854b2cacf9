package simulator

import "time"

// SetClock replaces the simulator's clock, so that tests can let tokens expire
// without waiting for them.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}
