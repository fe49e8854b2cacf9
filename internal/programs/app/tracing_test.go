package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/apiops-worker/apiops-worker/internal/testkit/otlpsink"
)

func TestTracingIsConfiguredByOTELVariables(t *testing.T) {
	cases := []struct {
		env      map[string]string
		protocol string // "" for off
		err      string
	}{
		{env: nil},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}}, // a protocol alone names no collector
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, protocol: "http/protobuf"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, protocol: "grpc"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, protocol: "http/protobuf"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: `OTEL_TRACES_EXPORTER="zipkin": the worker exports spans with otlp only`},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: `OTEL_EXPORTER_OTLP_PROTOCOL="http/json": must be grpc or http/protobuf`},
	}
	for _, tc := range cases {
		ts, err := tracingFromEnv(envFrom(tc.env))
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.env, err, tc.err)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.protocol == "" && ts != nil, tc.protocol != "" && (ts == nil || ts.protocol != tc.protocol):
			t.Errorf("%v: %+v, want protocol %q", tc.env, ts, tc.protocol)
		}
	}
	_, err := parseSettings([]string{"--demo"}, envFrom(map[string]string{"OTEL_TRACES_EXPORTER": "console"}), nil)
	if err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") {
		t.Errorf("a bad exporter is not a settings error: %v", err)
	}
}

// TestWorkerExportsSpansOverOTLP: the program, configured only by OTEL_* variables,
// sends a command's spans to a collector over OTLP/HTTP and over OTLP/gRPC, in the
// publisher's trace, under the service's name.
func TestWorkerExportsSpansOverOTLP(t *testing.T) {
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(strings.ReplaceAll(protocol, "/", "-"), func(t *testing.T) {
			sink := otlpsink.New()
			listen := sink.ListenHTTP
			if protocol == "grpc" {
				listen = sink.ListenGRPC
			}
			endpoint, stop, err := listen()
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			// The exporters read the process environment themselves.
			env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
				"OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_SERVICE_NAME": "worker-under-test"}
			for k, v := range env {
				t.Setenv(k, v)
			}
			d := startDemo(t, env)
			nc, err := nats.Connect(d.natsURL)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			msg := nats.NewMsg("apiops.cmd.MyProject.credential.truststore.set")
			msg.Data = []byte(`{"id":"traced-1","params":{"username":"api-user","keystoreName":"trust-2026"}}`)
			msg.Header.Set("traceparent", "00-"+publisherTrace+"-00f067aa0ba902b7-01")
			if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			spans, err := sink.Await(ctx, func(spans []otlpsink.Span) bool {
				for _, s := range spans {
					if s.Name == "process credential.truststore.set" {
						return true
					}
				}
				return false
			})
			if err != nil {
				t.Fatalf("no command span exported: %v; spans %+v; logs %+v", err, spans, d.logs.lines())
			}
			for _, s := range spans {
				if s.TraceID != publisherTrace || s.Attributes["resource.service.name"] != "worker-under-test" {
					t.Errorf("span %s: trace %s, resource %v", s.Name, s.TraceID, s.Attributes)
				}
			}
		})
	}
}

const publisherTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
