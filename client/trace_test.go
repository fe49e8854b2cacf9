package client_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/apiops-worker/apiops-worker/internal/tracecontext"
)

// TestPublishCarriesTheCallersTrace: a command published inside a span carries it as
// W3C traceparent and tracestate; one published outside any span carries neither.
func TestPublishCarriesTheCallersTrace(t *testing.T) {
	e := setup(t)
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	state, _ := trace.ParseTraceState("vendor=value")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, TraceState: state}))
	if _, err := e.client.Publish(ctx, truststoreSet("traced-1", "api-user")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Publish(context.Background(), truststoreSet("untraced-1", "api-user")); err != nil {
		t.Fatal(err)
	}
	traced, err := e.commands.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := traced.Header.Get(tracecontext.HeaderTraceParent), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; got != want {
		t.Errorf("traceparent %q, want %q", got, want)
	}
	if got := traced.Header.Get(tracecontext.HeaderTraceState); got != "vendor=value" {
		t.Errorf("tracestate %q", got)
	}
	untraced, err := e.commands.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if h := untraced.Header.Get(tracecontext.HeaderTraceParent); h != "" {
		t.Errorf("a command published outside a span carries traceparent %q", h)
	}
}
