package worker_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/worker"
)

// TestBacklogNamesTheOldestUnfinishedCommand: while commands wait behind a request
// APIOps has not answered, the backlog counts them and dates the oldest from its
// publish; once all finished, nothing is pending and there is no oldest.
func TestBacklogNamesTheOldestUnfinishedCommand(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		<-release
		return false
	}
	w := e.start(nil)
	before := time.Now()
	line := readExample(t, "credential.truststore.set")
	for _, id := range []string{"backlog-1", "backlog-2", "backlog-3"} { // one resource: they queue
		e.publishLine(withField(t, line, "id", id))
	}
	var b worker.Backlog
	eventually(t, 10*time.Second, "three commands in the backlog", func() bool {
		var err error
		b, err = w.Backlog(context.Background())
		return err == nil && b.Pending+b.AckPending == 3
	})
	if b.Oldest.Before(before.Add(-time.Second)) || b.Oldest.After(time.Now()) {
		t.Errorf("oldest %v, want the first publish, after %v", b.Oldest, before)
	}
	close(release)
	e.awaitResults(3, 20*time.Second)
	eventually(t, 10*time.Second, "an empty backlog", func() bool {
		b, err := w.Backlog(context.Background())
		return err == nil && b == worker.Backlog{}
	})
}
