package worker

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/apiops-worker/apiops-worker/internal/tracecontext"
	"github.com/apiops-worker/apiops-worker/messages"
)

// Tracing continues a publisher's trace (the traceparent header of a command) with
// one span per command, from delivery to acknowledgement, and child spans for the
// wait for its resources, each APIOps attempt, pauses, and the terminal writes; a
// plan's steps are spans of their own under the plan's. The spans' context goes out
// as traceparent on the APIOps request, the result, the reply and the dead letter.
//
// Attributes hold names (project, type, id, subject), counts, statuses and error
// codes the contract names (messages.PublicCode), never a command's params: those may
// hold keystore passwords and files. APIOps's error text and its own codes are left
// out too: they may quote what it was sent. See docs/design/tracing.md.
//
// With no TracerProvider the worker makes no span. A command without traceparent then
// costs one header lookup; one with it has its publisher's span passed on unchanged,
// as OpenTelemetry's API does without an SDK, and its log line names the trace.

const tracerName = "github.com/apiops-worker/apiops-worker/worker"

// Span attribute keys of the worker's own.
const (
	attrProject     = attribute.Key("apiops.project")
	attrCommandID   = attribute.Key("apiops.command.id")
	attrCommandType = attribute.Key("apiops.command.type")
	attrCorrelation = attribute.Key("apiops.correlation_id")
	attrSequence    = attribute.Key("apiops.stream.sequence")
	attrDelivery    = attribute.Key("apiops.delivery")
	attrStatus      = attribute.Key("apiops.result.status")
	attrErrorCode   = attribute.Key("apiops.error.code")
	attrAttempt     = attribute.Key("apiops.attempt")
	attrRetryReason = attribute.Key("apiops.retry.reason")
	attrPause       = attribute.Key("apiops.pause.reason")
	attrStep        = attribute.Key("apiops.plan.step")
	attrStopped     = attribute.Key("apiops.stopped")
)

// tracing starts the spans of commands' steps; its tracer is nil when tracing is off.
type tracing struct{ tracer trace.Tracer }

// traced is a task's spans; nil for a command without trace, with tracing off. With
// tracing off, ctx holds the publisher's span context and the spans are no-ops.
type traced struct {
	ctx  context.Context // holds span
	span trace.Span
	wait trace.Span // the wait for the task's resources, until it starts
}

// traceDelivery starts t's command span, under the publisher's span if the message
// names one, and its wait for its resources.
func (w *Worker) traceDelivery(t *task) {
	parent := tracecontext.Extract(context.Background(), t.msg.Headers()) // one lookup without traceparent
	if w.tracer == nil {
		if trace.SpanContextFromContext(parent).IsValid() {
			t.trace = &traced{ctx: parent, span: noSpan}
		}
		return
	}
	ctx, span := w.tracer.Start(parent, "process "+metricType(t.cmd.Type),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(t.received),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", t.subject(w.subjects)), // bounded, as results' subjects
			attrSequence.Int64(int64(t.seq)), attrDelivery.Int64(int64(t.delivered)),
		), commandAttributes(t.cmd))
	_, wait := w.tracer.Start(ctx, "wait for resource", trace.WithTimestamp(t.received))
	t.trace = &traced{ctx: ctx, span: span, wait: wait}
}

func commandAttributes(cmd *messages.Command) trace.SpanStartEventOption {
	attrs := []attribute.KeyValue{attrProject.String(cmd.Project), attrCommandID.String(cmd.ID), attrCommandType.String(metricType(cmd.Type))}
	if cmd.CorrelationID != "" {
		attrs = append(attrs, attrCorrelation.String(cmd.CorrelationID))
	}
	return trace.WithAttributes(attrs...)
}

// traceStarted ends t's wait: its resources are its own.
func (t *task) traceStarted() {
	if t.trace != nil && t.trace.wait != nil {
		t.trace.wait.End()
		t.trace.wait = nil
	}
}

// traceEnd ends t's span with its result, or with why it stopped unfinished.
func (t *task) traceEnd(res *messages.Result, stopped error) {
	if t.trace == nil {
		return
	}
	t.traceStarted()
	endSpan(t.trace.span, res, stopped)
}

func endSpan(span trace.Span, res *messages.Result, stopped error) {
	switch {
	case stopped != nil:
		span.SetAttributes(attrStopped.String(stopped.Error()))
	case res == nil: // its id had finished: the stored result went out again
		span.SetAttributes(attribute.Bool("apiops.duplicate", true))
	default:
		span.SetAttributes(attrStatus.String(string(res.Status)))
		if res.Error != nil {
			span.SetAttributes(attrErrorCode.String(messages.PublicCode(res.Error.Code)))
		}
		if res.Status != messages.StatusSucceeded {
			span.SetStatus(codes.Error, string(res.Status))
		}
	}
	span.End()
}

// traceStep starts the span of a plan's step, under the plan's; with tracing off the
// step shares the plan's trace context.
func (tr tracing) traceStep(plan, st *task, name string, index int) {
	if plan.trace == nil || tr.tracer == nil {
		st.trace = plan.trace
		return
	}
	ctx, span := tr.tracer.Start(plan.trace.ctx, name+" "+metricType(st.cmd.Type), commandAttributes(st.cmd),
		trace.WithAttributes(attrStep.Int(index)))
	st.trace = &traced{ctx: ctx, span: span}
}

// traceChild starts a child span of t, to be ended by the caller; a no-op span when
// tracing is off.
func (tr tracing) traceChild(t *task, name string, attrs ...attribute.KeyValue) trace.Span {
	if t.trace == nil || tr.tracer == nil {
		return noSpan
	}
	_, span := tr.tracer.Start(t.trace.ctx, name, trace.WithAttributes(attrs...))
	return span
}

var noSpan = trace.SpanFromContext(context.Background())

// tracePause starts a span for a wait that is about to begin if the command's project
// is paused now; it is ended by the caller.
func (tr tracing) tracePause(t *task, gate *gate) trace.Span {
	if t.trace == nil || tr.tracer == nil {
		return noSpan
	}
	reason, _, _ := gate.state()
	if reason == Running {
		return noSpan
	}
	return tr.traceChild(t, "paused", attrPause.String(string(reason)))
}

// traceAttempt starts the span of one APIOps request and returns the context that
// carries it to the HTTP client, which sends it as traceparent. retryOf is why the
// request is sent again ("" for a first request).
func (tr tracing) traceAttempt(ctx context.Context, t *task, req messages.APIRequest, retryOf string) (context.Context, trace.Span) {
	switch {
	case t.trace == nil:
		return ctx, noSpan
	case tr.tracer == nil: // the publisher's span goes on to APIOps
		return trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(t.trace.ctx)), noSpan
	}
	attrs := []attribute.KeyValue{attribute.String("http.request.method", req.Method), attrAttempt.Int(t.attempts.Requests + 1)}
	if retryOf != "" {
		attrs = append(attrs, attrRetryReason.String(retryOf))
	}
	_, span := tr.tracer.Start(t.trace.ctx, req.Method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return trace.ContextWithSpan(ctx, span), span
}

// endAttempt ends an attempt's span with APIOps's HTTP status (0: no answer) and the
// failure's code ("" when it succeeded).
func endAttempt(span trace.Span, status int, failure string) {
	if !span.IsRecording() {
		return
	}
	if status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if failure != "" {
		span.SetAttributes(attribute.String("error.type", failure))
		span.SetStatus(codes.Error, failure)
	}
	if failure == tokenUnreadable {
		span.SetAttributes(attribute.Bool("apiops.request.sent", false))
	}
	span.End()
}

// traceHeaders sets traceparent and tracestate in h, a result's, reply's or dead
// letter's headers, to t's span, in place of any the publisher set.
func (t *task) traceHeaders(h nats.Header) {
	if t.trace == nil {
		return
	}
	for k := range h {
		if strings.EqualFold(k, tracecontext.HeaderTraceParent) || strings.EqualFold(k, tracecontext.HeaderTraceState) {
			delete(h, k)
		}
	}
	tracecontext.Inject(t.trace.ctx, h)
}

// traceID is the trace t belongs to, for its log line; "" when none.
func (t *task) traceID() string {
	if t.trace == nil {
		return ""
	}
	return trace.SpanContextFromContext(t.trace.ctx).TraceID().String()
}
