// Package tracecontext carries W3C Trace Context (traceparent, tracestate) in NATS
// headers and in the environment, for the worker, the client library and apiopsctl.
// Only the W3C format is used, whatever global propagator a program sets: it is what
// the contract names.
package tracecontext

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Header names, as W3C spells them. NATS headers are case-sensitive: these are the
// exact keys a publisher sets.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

var w3c propagation.TraceContext

// Inject sets traceparent and tracestate in h from the span context of ctx; it leaves
// h as it is when ctx holds no valid span context.
func Inject(ctx context.Context, h nats.Header) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		w3c.Inject(ctx, natsCarrier(h))
	}
}

// Extract returns ctx with the remote span context that h carries, or ctx itself when
// h carries none or an invalid one.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h.Get(HeaderTraceParent) == "" {
		return ctx
	}
	return w3c.Extract(ctx, natsCarrier(h))
}

// FromEnvironment returns ctx with the span context in the TRACEPARENT and TRACESTATE
// variables, the carrier OpenTelemetry specifies for passing a trace to a command-line
// program; getenv is os.Getenv or a test's stand-in.
func FromEnvironment(ctx context.Context, getenv func(string) string) context.Context {
	if getenv("TRACEPARENT") == "" {
		return ctx
	}
	return w3c.Extract(ctx, envCarrier(getenv))
}

type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c natsCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

type envCarrier func(string) string

func (c envCarrier) Get(key string) string {
	switch key {
	case HeaderTraceParent:
		return c("TRACEPARENT")
	case HeaderTraceState:
		return c("TRACESTATE")
	}
	return ""
}
func (envCarrier) Set(string, string) {}
func (envCarrier) Keys() []string     { return []string{HeaderTraceParent, HeaderTraceState} }
