package worker

// LoseAcks makes the worker skip acknowledging finished commands, as when an ack is
// lost: they come back after AckWait.
func LoseAcks(w *Worker, lose bool) { w.loseAcks.Store(lose) }
