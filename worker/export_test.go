package worker

// LoseAcks makes the worker skip acknowledging the next n finished commands, as when
// an ack is lost: they come back after AckWait.
func LoseAcks(w *Worker, n int32) { w.loseAcks.Store(n) }

// ResultKey is the idempotency bucket's key for the outcome of project's command id.
func ResultKey(project, id string) string { return resultKey(commandKey{project: project, id: id}) }
