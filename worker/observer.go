package worker

import (
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Observer is told what the worker does, for metrics and service statistics. Its
// methods are called from many goroutines and must be cheap. Type names passed to it
// are known command types or "unknown", so they are safe as metric labels.
type Observer interface {
	// CommandStarted and CommandDone bracket the processing of one command.
	CommandStarted()
	CommandDone()
	// CommandFinished reports a command's final status, its result's error code ("" when
	// it succeeded) and the time from its publish to its result.
	CommandFinished(typeName string, status messages.Status, errorCode string, sincePublish time.Duration)
	// APIOpsRequest reports one request; statusCode is 0 when no response came.
	APIOpsRequest(typeName string, statusCode int, d time.Duration)
	// Retry reports that a command will be sent to APIOps again.
	Retry(typeName string)
	// DeadLetter reports a dead letter stored for a command.
	DeadLetter(typeName string, status messages.Status)
	// Paused reports the worker's state after each change.
	Paused(reason PauseReason)
	// Active reports whether this instance is the one taking commands, after each
	// change.
	Active(active bool)
}

// NopObserver ignores everything.
type NopObserver struct{}

func (NopObserver) CommandStarted()                                                {}
func (NopObserver) CommandDone()                                                   {}
func (NopObserver) CommandFinished(string, messages.Status, string, time.Duration) {}
func (NopObserver) APIOpsRequest(string, int, time.Duration)                       {}
func (NopObserver) Retry(string)                                                   {}
func (NopObserver) DeadLetter(string, messages.Status)                             {}
func (NopObserver) Paused(PauseReason)                                             {}
func (NopObserver) Active(bool)                                                    {}

// metricType bounds a command's type to the known types: the subject's type token is
// whatever a publisher sent.
func metricType(typeName string) string {
	if _, ok := messages.LookupType(typeName); ok || typeName == messages.PlanType {
		return typeName
	}
	return "unknown"
}
