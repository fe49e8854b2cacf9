package worker

import (
	"cmp"
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/messages"
)

// task is one delivered command, from admission (admission.go) to release
// (scheduler.go).
type task struct {
	msg       jetstream.Msg
	src       *source // the consumer it came from; a plan's step shares the plan's
	seq       uint64  // stream sequence
	delivered uint64  // times delivered, this one included
	received  time.Time
	cmd       *messages.Command // never nil; partly filled when invalid is set
	// invalid is the verdict of the checks a command goes through before it runs
	// (decoding, replyTo, its keystore files), nil when it passed them; rejection is
	// the outcome that verdict comes to, made with it (see reject).
	invalid   error
	rejection *messages.Result
	// keys are the resources: commands with a key in common run one at a time, in
	// stream order (resources.go). A command has one; a plan those of all its steps.
	keys     []string
	attempts attempts
	// planOf is the plan this task is a step of: it shares the plan's message and
	// finishes without replying or acknowledging, which the plan does once.
	planOf *task
	// term is the lease term the command was delivered in; waitCtx ends when that
	// term does (the command is dropped) or when shutdown starts (handed back). See
	// the contexts in doc.go.
	term    *term
	waitCtx context.Context
	trace   *traced // nil when tracing is off (tracing.go)
	// acked is set before the command's acknowledgement is sent: a barrier no longer
	// counts it as out.
	acked atomic.Bool
}

// reject records that the command may not run, and the result that says why.
func (t *task) reject(err error) {
	t.invalid = err
	t.rejection = messages.Rejection(t.cmd, err, t.received)
}

// commandKey is the command's identity: its project and id.
func (t *task) commandKey() commandKey { return commandKey{project: t.cmd.Project, id: t.cmd.ID} }

// msgID is the Nats-Msg-Id of the command's result and dead letter.
func (t *task) msgID() string { return messages.MsgID(t.cmd.Project, t.cmd.ID) }

// messageMsgID is a Nats-Msg-Id for an outcome of this message alone, not of its id.
func (t *task) messageMsgID() string { return t.msgID() + "@" + strconv.FormatUint(t.seq, 10) }

// copyKey is one command of a consumer, of which several deliveries may be held.
type copyKey struct {
	src *source
	seq uint64
}

// stopErr is why t's waitCtx ended: its lease term did (errDropped) or shutdown
// started (errHandBack).
func stopErr(t *task) error {
	if t.term.ended() {
		return errDropped
	}
	return errHandBack
}

func bySeq(a, b *task) int { return cmp.Compare(a.seq, b.seq) }

// mayGoOn returns nil while t may be worked on, else why not: its lease term ended
// (errDropped) or shutdown started (errHandBack).
func (t *task) mayGoOn(stopping bool) error {
	switch {
	case t.term.ended():
		return errDropped
	case stopping:
		return errHandBack
	}
	return nil
}

// subject is the command subject t stands for, which its result and dead letter
// follow: for a plan's step the subject the step would have as a command of its own.
// It is built from the project and the type only, and only as far as they are well
// formed (a malformed project is messages.InvalidProject, a type that is none
// messages.UnknownType), so that a publisher can make the worker publish on no subject
// of its choosing, and on none longer than a project name allows.
func (t *task) subject(subjects messages.Subjects) string {
	project, typeName := t.cmd.Project, t.cmd.Type
	if messages.CheckProject(project) != "" {
		project = messages.InvalidProject
	}
	if _, known := messages.LookupType(typeName); !known && typeName != messages.PlanType {
		typeName = messages.UnknownType
	}
	return subjects.Command(project, typeName)
}

// body is the command t stands for, as it travels: a plan's step as a command of its
// own, which its dead letter holds and a replay publishes.
func (t *task) body() []byte {
	if t.planOf != nil {
		if body, err := t.cmd.Encode(); err == nil {
			return body
		}
	}
	return t.msg.Data()
}
