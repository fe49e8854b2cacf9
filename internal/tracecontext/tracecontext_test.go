package tracecontext

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
)

const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestRoundTripThroughNATSHeaders(t *testing.T) {
	in := nats.Header{}
	in.Set(HeaderTraceParent, parent)
	in.Set(HeaderTraceState, "a=1")
	out := nats.Header{}
	Inject(Extract(context.Background(), in), out)
	if out.Get(HeaderTraceParent) != parent || out.Get(HeaderTraceState) != "a=1" {
		t.Errorf("headers %v, want %v", out, in)
	}
	// Headers are case-sensitive in NATS: the W3C names are lower case.
	if _, ok := out["Traceparent"]; ok {
		t.Errorf("canonicalised header name in %v", out)
	}
}

func TestNothingToCarry(t *testing.T) {
	bad := nats.Header{}
	bad.Set(HeaderTraceParent, "00-not-a-trace")
	for _, h := range []nats.Header{{}, bad} {
		if sc := trace.SpanContextFromContext(Extract(context.Background(), h)); sc.IsValid() {
			t.Errorf("%v gave a span context %v", h, sc)
		}
	}
	out := nats.Header{}
	Inject(context.Background(), out)
	if len(out) != 0 {
		t.Errorf("headers %v from no span", out)
	}
}

func TestFromEnvironment(t *testing.T) {
	env := map[string]string{"TRACEPARENT": parent, "TRACESTATE": "a=1"}
	ctx := FromEnvironment(context.Background(), func(k string) string { return env[k] })
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.TraceState().String() != "a=1" || !sc.IsRemote() {
		t.Errorf("span context %v", sc)
	}
	if sc := trace.SpanContextFromContext(FromEnvironment(context.Background(), func(string) string { return "" })); sc.IsValid() {
		t.Errorf("span context %v from an empty environment", sc)
	}
}
