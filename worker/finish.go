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
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/messages"
)

// maxHeaderValue bounds the error text copied into a dead letter's header.
const maxHeaderValue = 1024

// finish is the one terminal step every command goes through, whatever its status, so
// that no outcome can skip a stage: it stores the outcome under the command's id, then
// the dead letter (unless succeeded), then the result, each acknowledged by JetStream;
// then it replies to replyTo and acknowledges the command. When a step fails the
// caller runs finish again: the outcome is stored once (another delivery of the id
// that stored first wins), and the publishes carry Nats-Msg-Id, so JetStream drops
// what it already has.
func (w *Worker) finish(ctx context.Context, t *task, res *messages.Result) error {
	body, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if res.ID != "" {
		stored, err := w.store.finishOnce(ctx, res.ID, finished{Seq: t.seq, Result: body})
		if err != nil {
			return err
		}
		if stored.Seq != t.seq || !bytes.Equal(stored.Result, body) {
			return w.finishAgain(ctx, t, stored)
		}
	}
	return w.publishOutcome(ctx, t, res, body)
}

// finishAgain handles a command whose id already finished. If this is the very
// message that finished (its acknowledgement was lost, or the worker stopped before
// it), the remaining steps are done again; JetStream drops the copies it already has.
// Otherwise the id was published again: its stored result goes to the new replyTo
// only, and APIOPS_RESULTS keeps its one copy.
func (w *Worker) finishAgain(ctx context.Context, t *task, done *finished) error {
	var res messages.Result
	if err := json.Unmarshal(done.Result, &res); err != nil {
		return fmt.Errorf("decode stored result of %s: %w", t.cmd.ID, err)
	}
	if done.Seq == t.seq {
		return w.publishOutcome(ctx, t, &res, done.Result)
	}
	w.reply(t, &res, done.Result)
	w.ack(t)
	w.log.Info("command id already finished: stored result sent again", zap.String("id", res.ID), zap.String("status", string(res.Status)), zap.Uint64("seq", t.seq))
	return nil
}

func (w *Worker) publishOutcome(ctx context.Context, t *task, res *messages.Result, body []byte) error {
	if res.Status != messages.StatusSucceeded {
		ack, err := w.js.PublishMsg(ctx, w.deadLetter(t, res))
		if err != nil {
			return fmt.Errorf("publish dead letter: %w", err)
		}
		if !ack.Duplicate {
			w.observer.DeadLetter(metricType(res.Type), res.Status)
		}
	}
	msg := &nats.Msg{Subject: w.subjects.ResultFor(t.msg.Subject()), Header: resultHeaders(res), Data: body}
	ack, err := w.js.PublishMsg(ctx, msg)
	if err != nil {
		return fmt.Errorf("publish result: %w", err)
	}
	if !ack.Duplicate {
		sincePublish := time.Duration(0)
		if meta, err := t.msg.Metadata(); err == nil {
			sincePublish = res.FinishedAt.Sub(meta.Timestamp)
		}
		w.observer.CommandFinished(metricType(res.Type), res.Status, sincePublish)
	}
	w.reply(t, res, body)
	w.ack(t)
	return nil
}

func resultHeaders(res *messages.Result) nats.Header {
	h := nats.Header{}
	if res.ID != "" {
		h.Set(messages.HeaderMsgID, res.ID)
		h.Set(messages.HeaderCommandID, res.ID)
	}
	h.Set(messages.HeaderStatus, string(res.Status))
	return h
}

// deadLetter copies the command, secrets redacted, with headers saying what happened.
func (w *Worker) deadLetter(t *task, res *messages.Result) *nats.Msg {
	body, redacted := messages.RedactSecrets(t.msg.Data())
	h := nats.Header{}
	for k, v := range t.msg.Headers() { // the publisher's own headers, not ours
		if !strings.HasPrefix(k, "Nats-") && !strings.HasPrefix(k, "Apiops-") || k == messages.HeaderReplayOf {
			h[k] = v
		}
	}
	if res.ID != "" {
		h.Set(messages.HeaderMsgID, res.ID)
		h.Set(messages.HeaderCommandID, res.ID)
	}
	h.Set(messages.HeaderStatus, string(res.Status))
	if res.Error != nil {
		h.Set(messages.HeaderErrorCode, res.Error.Code)
		h.Set(messages.HeaderError, headerValue(res.Error.Message))
	}
	h.Set(messages.HeaderAttempts, strconv.Itoa(res.Attempts))
	h.Set(messages.HeaderOriginalSubject, t.msg.Subject())
	if redacted {
		h.Set(messages.HeaderRedacted, "true")
	}
	return &nats.Msg{Subject: w.subjects.DeadLetterFor(t.msg.Subject()), Header: h, Data: body}
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
func (w *Worker) reply(t *task, res *messages.Result, body []byte) {
	if t.cmd.ReplyTo == "" {
		return
	}
	msg := &nats.Msg{Subject: t.cmd.ReplyTo, Header: resultHeaders(res), Data: body}
	if err := w.nc.PublishMsg(msg); err != nil {
		w.log.Warn("reply to replyTo", zap.String("id", res.ID), zap.Error(err))
	}
}

// ack acknowledges without waiting for the server's confirmation: if the ack is lost
// the command comes back and finishAgain completes it without calling APIOps.
func (w *Worker) ack(t *task) {
	if n := w.loseAcks.Load(); n > 0 && w.loseAcks.CompareAndSwap(n, n-1) {
		return
	}
	if err := t.msg.Ack(); err != nil {
		w.log.Warn("acknowledge command", zap.String("id", t.cmd.ID), zap.Error(err))
	}
}
