// Package worker consumes APIOps commands from NATS JetStream, executes each against
// APIOps with retries, and publishes one result per command: the consume → execute →
// report loop of apiops-worker. Worker wires it together; each room below owns its
// state and its lock.
//
// # One command's path
//
//	intake.go     Worker.pullFrom     pulls what the project's share of the room holds
//	admission.go  Worker.admit        decode: a command that may not run is rejected
//	                                  here (task.reject), and still goes the whole way
//	scheduler.go  scheduler.hold      parked behind a barrier, queued behind its
//	                                  resources (resources.go), or ready
//	worker.go     Worker.start        one goroutine per place in the room pops ready
//	process.go    Worker.process      the id's lock (idlocks.go), the keystore check
//	                                  (keystores.go), then decide:
//	process.go      Worker.lookUp       the id's record (store.go, lookup.go)
//	process.go      Worker.run          its rejection, its plan (plan.go, whose
//	                                    onFailure rollbacks rollback.go resolves),
//	                                    a verify's reads (verify.go), or
//	execute.go        executor.execute    requests under the gate (gate.go), the
//	                                      request slots (fairness.go) and the retry
//	                                      policy (retry.go)
//	process.go      Worker.storeOutcome finish:
//	finish.go         Worker.finish       record, dead letter, result, reply, ack
//	scheduler.go  scheduler.release   frees its resources; the next command starts
//
// A command that stops on the way goes back to the stream: dropped at once when the
// lease term ends (Worker.stopped, nakDropped), handed back in stream order at
// shutdown (scheduler.handBackInOrder).
//
// # The fleet
//
// One instance at a time is active: the holder of the lease (lease.go). A new holder
// takes over (takeover.go: Worker.takeOver) and, until every command a predecessor
// may still hold is back, its scheduler parks the consumer's commands behind a
// barrier (scheduler.watch, scheduler.noteDeliveryLocked, Worker.checkBarrier,
// scheduler.endBarrier). docs/design/fleet.md gives the argument;
// docs/design/fairness.md the room and the slots; docs/design/idempotency.md the
// records.
//
// # Contexts
//
// One rule: a wait uses the task's waitCtx; work whose result must be kept uses the
// requests context; the loops that bring new work use the term's context.
//
//   - Run's ctx: its end starts shutdown. The lease's wait to become active and each
//     term's context derive from it.
//   - requests (running.requests, the ctx process gets): APIOps requests and the
//     terminal writes. It outlives Run's ctx by up to ShutdownTimeout, so that what
//     APIOps did is stored; the lease and the record lookups run under it too.
//   - Worker.waitCtx: ends as shutdown starts, so that commands waiting for a retry,
//     a pause's end or a slot are handed back at once.
//   - the term's context (serve): the takeover and the intake of one lease term; ends
//     when the term is lost or ctx ends.
//   - the term's wait context, each task's waitCtx: ends when the task's term is lost
//     (the task is dropped: stopErr says errDropped) or shutdown starts
//     (errHandBack).
//
// Reads and writes of the worker's own records take a fresh finishTimeout each
// (Worker.persistently), bounded by the requests context or the waitCtx.
package worker
