package worker

import (
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/messages"
)

// admit decodes a command delivered from src and hands it to the scheduler, which
// queues it behind earlier commands for the same resource, or parks it while the
// worker takes over. A command that may not run is rejected here, where the verdict is
// made: it still goes through the scheduler and the finish like any other, so that its
// id's record and its result are kept in order.
func (w *Worker) admit(msg jetstream.Msg, src *source) {
	t := w.decode(msg, src)
	w.traceDelivery(t)
	if !w.sched.hold(t) {
		w.sched.nakDropped(t)
		t.traceEnd(nil, errDropped)
		w.room.free(src.roomKey(), 1)
	}
}

// decode makes the task of a delivered command, rejected when its subject, its body or
// its replyTo is wrong, and sets the resources it waits for.
func (w *Worker) decode(msg jetstream.Msg, src *source) *task {
	t := &task{msg: msg, src: src, received: w.cfg.Clock.Now().UTC(), delivered: 1}
	if meta, err := msg.Metadata(); err == nil {
		t.seq, t.delivered = meta.Sequence.Stream, meta.NumDelivered
	}
	var invalid error
	project, typeName, err := w.subjects.ParseCommand(msg.Subject())
	if err != nil {
		t.cmd = &messages.Command{}
		invalid = &messages.Error{Code: messages.CodeUnknownType, Field: "type", Message: err.Error()}
	} else {
		t.cmd, invalid = messages.DecodeWith(project, typeName, msg.Data(), w.secrets)
	}
	if t.cmd.ReplyTo != "" {
		if problem := w.checkReplyTo(t.cmd.ReplyTo); problem != "" {
			t.cmd.ReplyTo = ""
			if invalid == nil {
				invalid = &messages.Error{Code: messages.CodeInvalidCommand, Field: "replyTo", Message: problem}
			}
		}
	}
	if invalid != nil {
		t.reject(invalid)
		t.keys = []string{"invalid:" + strconv.FormatUint(t.seq, 10)} // nothing to order against
		return t
	}
	t.keys = t.cmd.ResourceKeys()
	w.noteMsgID(msg, t)
	return t
}

// noteMsgID logs, once per process, a command whose Nats-Msg-Id is not its
// project-scoped id: its publisher shares JetStream's duplicate window with every
// project that uses the same bare ids, and should move to <project>/<id>.
func (w *Worker) noteMsgID(msg jetstream.Msg, t *task) {
	if w.notedMsgID.Load() {
		return
	}
	if id := msg.Headers().Get(messages.HeaderMsgID); id != "" && id != t.msgID() && w.notedMsgID.CompareAndSwap(false, true) {
		w.log.Warn("a publisher sets Nats-Msg-Id to something other than <project>/<id>; JetStream may drop its command as another project's duplicate",
			zap.String("project", t.cmd.Project), zap.String("id", t.cmd.ID), zap.String("nats_msg_id", id))
	}
}

// checkReplyTo returns what is wrong with a command's replyTo, or "": besides the
// contract's rules (Decode checks them), a reply must not land in the worker's own
// inbox, where it could pose as an answer to the worker's pulls or JetStream requests,
// should a project's inbox and the worker's ever meet.
func (w *Worker) checkReplyTo(replyTo string) string {
	if w.ownInbox != "" && (strings.HasPrefix(replyTo, w.ownInbox) || replyTo+"." == w.ownInbox) {
		return "must not be under " + w.ownInbox + ", the worker's own inbox"
	}
	return ""
}
