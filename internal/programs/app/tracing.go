package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/internal/buildinfo"
)

// tracingSettings is how spans leave the worker: OTLP over gRPC or HTTP. Only the
// standard OTEL_* variables configure it; the exporters read the endpoint, headers,
// TLS and timeouts from them, the SDK the sampler (OTEL_TRACES_SAMPLER) and the
// batching (OTEL_BSP_*).
type tracingSettings struct {
	protocol string // "grpc" or "http/protobuf"
}

// tracingFromEnv decides whether the worker traces. Unlike the SDK's own default
// (OTLP to localhost), tracing is off unless an exporter or an OTLP endpoint is named:
// a worker nobody collects spans from then makes none. It returns nil for off.
func tracingFromEnv(getenv func(string) string) (*tracingSettings, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	switch exporter := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exporter {
	case "none":
		return nil, nil
	case "":
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return nil, nil
		}
	case "otlp":
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: the worker exports spans with otlp only (or none)", exporter)
	}
	variable, protocol := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		variable, protocol = "OTEL_EXPORTER_OTLP_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol = strings.TrimSpace(protocol); protocol {
	case "":
		protocol = "http/protobuf" // the specification's default
	case "grpc", "http/protobuf":
	default:
		return nil, fmt.Errorf("%s=%q: must be grpc or http/protobuf", variable, protocol)
	}
	return &tracingSettings{protocol: protocol}, nil
}

// startTracing returns the tracer provider for the worker and its shutdown, which
// sends the spans still batched; a nil provider when tracing is off.
func startTracing(ctx context.Context, ts *tracingSettings, instance string, log *zap.Logger) (*sdktrace.TracerProvider, error) {
	if ts == nil {
		return nil, nil
	}
	var exporter sdktrace.SpanExporter
	var err error
	if ts.protocol == "grpc" {
		exporter, err = otlptracegrpc.New(ctx)
	} else {
		exporter, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP span exporter (OTEL_EXPORTER_OTLP_*): %w", err)
	}
	// The service's name and version come first, so that OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES, read after them, override them.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName), attribute.String("service.version", buildinfo.Version),
			attribute.String("service.instance.id", instance)),
		resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	// Export failures are the SDK's to retry; they are logged, not fatal.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", zap.Error(err)) }))
	log.Info("tracing on: spans exported over OTLP", zap.String("protocol", ts.protocol))
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res)), nil
}

// stopTracing sends the spans still batched, waiting a few seconds at most.
func stopTracing(tp *sdktrace.TracerProvider, log *zap.Logger) {
	if tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		log.Warn("tracing: sending the last spans", zap.Error(err))
	}
}
