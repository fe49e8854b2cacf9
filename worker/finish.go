package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/messages"
)

// maxHeaderValue bounds the error text copied into a dead letter's header.
const maxHeaderValue = 1024

// deadLetterHeaderRoom is what a dead letter's headers may take at most: the worker's
// own, each bounded (an error text, a subject built from a project name, a trace
// context, ids), with room to spare. The body gets the server's maximum payload less
// this, so that the dead letter always fits.
const deadLetterHeaderRoom = 8 << 10

// finish is the one terminal step every command goes through, whatever its status, so
// that no outcome can skip a stage: it stores the outcome under the command's project
// and id, then the dead letter (unless succeeded) and the result together, each
// acknowledged by JetStream; only then does it reply to replyTo and acknowledge the
// command. When a step fails the caller runs finish again: the outcome is stored once
// (the delivery of the id that stored first wins), and the publishes carry
// Nats-Msg-Id, so JetStream drops what it already has. See docs/design/idempotency.md.
func (w *Worker) finish(ctx context.Context, t *task, res *messages.Result) error {
	body, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if res.ID == "" {
		return w.publishOutcome(ctx, t, res, body, "")
	}
	// The record first: the result goes out under the id only once the id is this
	// command's.
	record := finished{Seq: t.seq, Result: body}
	record.Params, record.DigestKey = w.recordFingerprint(t)
	stored, err := w.store.finishOnce(ctx, t.commandKey(), record)
	if err != nil && tooLarge(err) && record.Params != nil {
		// The fingerprint is bounded, but never the reason an outcome goes unstored:
		// its coarsest form (a few digests, which still tell other params apart), and
		// should even that not fit, none (the record is then honoured as an older
		// worker's). The result is shortened only if it does not fit alone.
		w.log.Warn("the outcome's record is too large to store: keeping the coarsest fingerprint", zap.String("id", res.ID), zap.Uint64("seq", t.seq))
		record.Params = record.Params.Coarsest()
		if stored, err = w.store.finishOnce(ctx, t.commandKey(), record); err != nil && tooLarge(err) {
			record.Params, record.DigestKey = nil, ""
			stored, err = w.store.finishOnce(ctx, t.commandKey(), record)
		}
	}
	if err != nil {
		return err
	}
	if stored.Seq == t.seq && bytes.Equal(stored.Result, body) {
		return w.publishOutcome(ctx, t, res, body, t.msgID())
	}
	if stored.Seq != t.seq && (storedType(stored) != res.Type || len(w.paramsDiffer(t, stored)) > 0) {
		// Another message reused the id for another command and stored first while
		// this one ran (on another instance): report what this one did, under a
		// record and an id of its own, rather than claim the other's outcome.
		w.log.Warn("command id finished meanwhile as another command: this outcome is kept under the message's own id",
			zap.String("id", res.ID), zap.String("project", res.Project), zap.String("type", res.Type), zap.Uint64("seq", t.seq))
		return w.finishMessage(ctx, t, res, body)
	}
	_, err = w.finishAgain(ctx, t, stored)
	return err
}

// finishMessage stores and publishes an outcome that belongs to this message, not to
// its id, under the message's own key and Nats-Msg-Id; a redelivery finds it there.
func (w *Worker) finishMessage(ctx context.Context, t *task, res *messages.Result, body []byte) error {
	stored, err := w.store.finishMessageOnce(ctx, t.commandKey(), finished{Seq: t.seq, Result: body})
	if err != nil {
		return err
	}
	if !bytes.Equal(stored.Result, body) {
		if err := json.Unmarshal(stored.Result, res); err != nil {
			return fmt.Errorf("decode stored result of %s: %w", t.commandKey(), err)
		}
	}
	return w.publishOutcome(ctx, t, res, stored.Result, t.messageMsgID())
}

// finishAgain handles a command whose id already finished in its project. If this is
// the very message that finished (its acknowledgement was lost, or the worker stopped
// before it), the remaining steps are done again; JetStream drops the copies it
// already has. If the id was published again as the same command (type and params),
// the stored result, marked replayed, goes to the new replyTo only, and
// APIOPS_RESULTS keeps its one copy. If the id is reused for another command, this one
// is rejected: rejected is returned, for the log.
func (w *Worker) finishAgain(ctx context.Context, t *task, done *finished) (rejected *messages.Result, err error) {
	var res messages.Result
	if err := json.Unmarshal(done.Result, &res); err != nil {
		return nil, fmt.Errorf("decode stored result of %s: %w", t.commandKey(), err)
	}
	if done.Seq == t.seq {
		msgID := t.msgID()
		if done.legacy {
			msgID = t.cmd.ID // as the older worker published it: JetStream drops the copy
		}
		return nil, w.publishOutcome(ctx, t, &res, done.Result, msgID)
	}
	if res.Type != t.cmd.Type {
		return w.rejectReusedID(ctx, t, fmt.Sprintf("by a %s command", res.Type), "id")
	}
	if differ := w.paramsDiffer(t, done); len(differ) > 0 {
		how := "with other params (" + strings.Join(shortList(differ, 5), ", ") + ")"
		if t.invalid != nil { // differ names the invalid field
			how = "(and this command is invalid: " + t.invalid.Error() + ")"
		}
		return w.rejectReusedID(ctx, t, how, differ[0])
	}
	res.Replayed = true
	replayed, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	w.reply(t, &res, replayed, t.msgID())
	w.ack(t)
	w.log.Info("command id already finished: stored result sent again", zap.String("id", res.ID), zap.String("project", res.Project),
		zap.String("status", string(res.Status)), zap.Uint64("seq", t.seq))
	return nil, nil
}

// rejectReusedID rejects a command whose id finished as another command: how says
// which way it differs, field where. The id keeps the first command's outcome; the
// rejection is stored under the message's own record and Nats-Msg-Id (see
// finishMessage). If this message already has an outcome of its own there (it ran
// while the other command stored first, and its ack was lost), that outcome stands and
// is published again instead.
func (w *Worker) rejectReusedID(ctx context.Context, t *task, how, field string) (*messages.Result, error) {
	res := messages.Rejection(t.cmd, &messages.Error{Code: messages.CodeIDReused, Field: field,
		Message: fmt.Sprintf("was already used in project %s %s; give this command a new id", t.cmd.Project, how),
	}, t.received)
	res.FinishedAt = w.cfg.Clock.Now().UTC()
	body, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return res, w.finishMessage(ctx, t, res, body)
}

// shortList is at most n of list, and how many more there are.
func shortList(list []string, n int) []string {
	if len(list) <= n {
		return list
	}
	return append(list[:n:n], fmt.Sprintf("%d more", len(list)-n))
}

// storedType is the command type of a stored result.
func storedType(f *finished) string {
	var stored struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(f.Result, &stored)
	return stored.Type
}

// publishOutcome stores the dead letter (unless succeeded) and the result, each under
// msgID ("" for a command without a valid id), at once; once both are stored it
// replies and acknowledges.
func (w *Worker) publishOutcome(ctx context.Context, t *task, res *messages.Result, body []byte, msgID string) error {
	var dead jetstream.PubAckFuture
	if res.Status != messages.StatusSucceeded {
		f, err := w.js.PublishMsgAsync(w.deadLetter(t, res, msgID))
		if err != nil {
			return fmt.Errorf("publish dead letter: %w", err)
		}
		dead = f
	}
	result, err := w.js.PublishMsgAsync(&nats.Msg{Subject: w.subjects.ResultFor(t.subject(w.subjects)), Header: resultHeaders(t, res, msgID), Data: body})
	if err != nil {
		return fmt.Errorf("publish result: %w", err)
	}
	if dead != nil {
		ack, err := awaitAck(ctx, dead)
		if err != nil {
			return fmt.Errorf("publish dead letter: %w", err)
		}
		if !ack.Duplicate {
			w.observer.DeadLetter(metricType(res.Type), res.Status)
		}
	}
	ack, err := awaitAck(ctx, result)
	if err != nil {
		return fmt.Errorf("publish result: %w", err)
	}
	if !ack.Duplicate {
		sincePublish := time.Duration(0)
		if meta, err := t.msg.Metadata(); err == nil {
			sincePublish = res.FinishedAt.Sub(meta.Timestamp)
		}
		code := ""
		if res.Error != nil {
			code = res.Error.Code
		}
		w.observer.CommandFinished(metricType(res.Type), res.Status, code, sincePublish)
	}
	w.reply(t, res, body, msgID)
	w.ack(t)
	return nil
}

// awaitAck waits for an asynchronous publish's acknowledgement.
func awaitAck(ctx context.Context, f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// resultHeaders are the headers of a result, a reply and a dead letter: the trace
// context, the Nats-Msg-Id, the command's id and the status.
func resultHeaders(t *task, res *messages.Result, msgID string) nats.Header {
	h := nats.Header{}
	t.traceHeaders(h)
	if msgID != "" {
		h.Set(messages.HeaderMsgID, msgID)
	}
	if res.ID != "" {
		h.Set(messages.HeaderCommandID, res.ID)
	}
	h.Set(messages.HeaderStatus, string(res.Status))
	return h
}

// deadLetter copies the command, secrets redacted, with headers saying what happened.
// It fits by construction: a body too large for the server's maximum payload with the
// headers is cut to what fits (and marked, so that nobody replays it), and of the
// publisher's headers only a well-formed Apiops-Replay-Of goes along (the trace context
// goes as the worker read it). See docs/design/project-isolation.md.
func (w *Worker) deadLetter(t *task, res *messages.Result, msgID string) *nats.Msg {
	body, redacted := messages.RedactSecrets(t.body())
	h := resultHeaders(t, res, msgID)
	if replayOf := t.msg.Headers().Get(messages.HeaderReplayOf); replayOf != "" && messages.CheckID(replayOf) == "" {
		h.Set(messages.HeaderReplayOf, replayOf)
	}
	if room := int(w.nc.MaxPayload()) - deadLetterHeaderRoom; len(body) > room {
		h.Set(messages.HeaderTruncated, strconv.Itoa(len(body)))
		body = body[:max(room, 0)]
	}
	if res.Error != nil {
		h.Set(messages.HeaderErrorCode, res.Error.Code)
		h.Set(messages.HeaderError, headerValue(res.Error.Message))
		if res.Error.Field != "" {
			h.Set(messages.HeaderErrorField, headerValue(res.Error.Field))
		}
	}
	h.Set(messages.HeaderAttempts, strconv.Itoa(res.Attempts))
	h.Set(messages.HeaderCommandSeq, strconv.FormatUint(t.seq, 10))
	h.Set(messages.HeaderOriginalSubject, t.subject(w.subjects))
	if res.FailedStep != nil {
		h.Set(messages.HeaderFailedStep, strconv.Itoa(*res.FailedStep))
	}
	if redacted {
		h.Set(messages.HeaderRedacted, "true")
	}
	return &nats.Msg{Subject: w.subjects.DeadLetterFor(t.subject(w.subjects)), Header: h, Data: body}
}

// headerValue makes text safe for a NATS header: one line, bounded.
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxHeaderValue {
		s = strings.ToValidUTF8(s[:maxHeaderValue], "")
	}
	return s
}

// reply sends the result to the command's replyTo over core NATS: nobody may be
// listening, and the stored result is the record.
func (w *Worker) reply(t *task, res *messages.Result, body []byte, msgID string) {
	if t.cmd.ReplyTo == "" || t.planOf != nil {
		return
	}
	msg := &nats.Msg{Subject: t.cmd.ReplyTo, Header: resultHeaders(t, res, msgID), Data: body}
	if err := w.nc.PublishMsg(msg); err != nil {
		w.log.Warn("reply to replyTo", zap.String("id", res.ID), zap.Error(err))
	}
}

// ack acknowledges without waiting for the server's confirmation: if the ack is lost
// the command comes back and finishAgain completes it without calling APIOps.
func (w *Worker) ack(t *task) {
	if t.planOf != nil {
		return // the plan's message: acknowledged when the plan finishes
	}
	if n := w.loseAcks.Load(); n > 0 && w.loseAcks.CompareAndSwap(n, n-1) {
		return
	}
	if !w.lease.canStart() {
		// Another instance may have taken over and hold this command again: an
		// acknowledgement now would make its barrier count a command as back that is
		// not. The outcome is stored; whoever gets the command next finishes it.
		w.sched.nakDropped(t)
		return
	}
	w.sendAck(t)
}

// sendAck acknowledges t, fenced or not.
func (w *Worker) sendAck(t *task) {
	w.sched.markAcked(t)
	if err := t.msg.Ack(); err != nil {
		w.log.Warn("acknowledge command", zap.String("id", t.cmd.ID), zap.Error(err))
	}
}

func (w *Worker) logOutcome(t *task, res *messages.Result) {
	fields := []zap.Field{
		zap.String("id", res.ID), zap.String("type", res.Type), zap.String("project", res.Project),
		zap.String("status", string(res.Status)), zap.Int("attempts", res.Attempts),
		zap.Duration("duration", res.FinishedAt.Sub(t.received)), zap.Int("http_status", res.HTTPStatus),
	}
	if id := t.traceID(); id != "" {
		fields = append(fields, zap.String("trace_id", id))
	}
	if res.CorrelationID != "" {
		fields = append(fields, zap.String("correlation_id", res.CorrelationID))
	}
	if res.Error != nil {
		fields = append(fields, zap.String("error_code", res.Error.Code), zap.String("error", res.Error.Message))
		if res.Error.Field != "" {
			fields = append(fields, zap.String("field", res.Error.Field))
		}
	}
	if res.Status == messages.StatusSucceeded {
		w.log.Info("command finished", fields...)
	} else {
		w.log.Warn("command finished", fields...)
	}
}
