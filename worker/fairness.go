package worker

import (
	"context"
	"sync"
)

// Fairness between projects: one project's backlog must not delay another's command by
// more than a few commands' time. Each project is pulled from a consumer of its own
// (intake.go), may hold at most its share of the commands the worker holds (room), and
// the APIOps requests the worker may send at once go to the waiting projects in turn
// (slots). See docs/design/fairness.md.

// slots are the Concurrency APIOps requests that may be in flight at once. A freed slot
// goes to the project after the last one served that has a command waiting, round
// robin, and within a project to its commands in the order they asked: a project with
// thousands of commands waiting gets one slot in turn like a project with one.
type slots struct {
	mu      sync.Mutex
	free    int
	waiting map[string][]chan struct{} // by project, in order of asking
	order   []string                   // projects with a command waiting, in turn
}

func newSlots(n int) *slots { return &slots{free: n, waiting: make(map[string][]chan struct{})} }

// acquire waits for a slot for a command of project; false when ctx ends first.
func (s *slots) acquire(ctx context.Context, project string) bool {
	s.mu.Lock()
	if s.free > 0 && len(s.order) == 0 {
		s.free--
		s.mu.Unlock()
		return true
	}
	granted := make(chan struct{})
	if len(s.waiting[project]) == 0 {
		s.order = append(s.order, project)
	}
	s.waiting[project] = append(s.waiting[project], granted)
	s.mu.Unlock()
	select {
	case <-granted:
		return true
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-granted: // handed over meanwhile: pass it on
		s.releaseLocked()
		return false
	default:
	}
	queue := s.waiting[project]
	for i, c := range queue {
		if c == granted {
			s.waiting[project] = append(queue[:i:i], queue[i+1:]...)
			break
		}
	}
	if len(s.waiting[project]) == 0 {
		delete(s.waiting, project)
		for i, p := range s.order {
			if p == project {
				s.order = append(s.order[:i:i], s.order[i+1:]...)
				break
			}
		}
	}
	return false
}

// release frees a slot, handing it to the next waiting project.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked()
}

func (s *slots) releaseLocked() {
	if len(s.order) == 0 {
		s.free++
		return
	}
	project := s.order[0]
	queue := s.waiting[project]
	close(queue[0])
	s.order = s.order[1:]
	if len(queue) > 1 {
		s.waiting[project] = queue[1:]
		s.order = append(s.order, project) // its next command waits for its next turn
	} else {
		delete(s.waiting, project)
	}
}
