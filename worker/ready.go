package worker

import "sync"

// readyQueue holds the commands that may start, in the order they became ready, until
// one of the worker's goroutines takes them. It never blocks a sender: a command that
// frees its resource always hands the next one over, however many commands are held
// (projects behind a barrier may hold more than the goroutines can run at once).
type readyQueue struct {
	mu    sync.Mutex
	tasks []*task
	wake  chan struct{} // holds a token while tasks may be waiting
}

func newReadyQueue() *readyQueue { return &readyQueue{wake: make(chan struct{}, 1)} }

func (q *readyQueue) push(t *task) {
	q.mu.Lock()
	q.tasks = append(q.tasks, t)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop takes the oldest ready command, waiting for one until quit closes.
func (q *readyQueue) pop(quit <-chan struct{}) (*task, bool) {
	for {
		q.mu.Lock()
		if len(q.tasks) > 0 {
			t := q.tasks[0]
			q.tasks[0] = nil
			q.tasks = q.tasks[1:]
			more := len(q.tasks) > 0
			q.mu.Unlock()
			if more { // pass the token on: another goroutine takes the next
				select {
				case q.wake <- struct{}{}:
				default:
				}
			}
			return t, true
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-quit:
			return nil, false
		}
	}
}
