// Package otlpsink receives spans over OTLP, gRPC or HTTP, as a collector would: for
// tests that check what the worker exports, and for the benchmark, which measures
// the cost of exporting.
package otlpsink

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is what the sink keeps of a received span.
type Span struct {
	Name, TraceID string
	Attributes    map[string]string
}

// Sink collects spans; with Discard set it only counts them.
type Sink struct {
	Discard bool

	mu    sync.Mutex
	spans []Span
	count int
	added chan struct{} // closed and replaced at each export
}

// New returns an empty sink.
func New() *Sink { return &Sink{added: make(chan struct{})} }

// ServeHTTP accepts OTLP/HTTP protobuf exports on /v1/traces.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.add(&req)
	resp, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

// ListenHTTP serves OTLP/HTTP on a free loopback port until stop; endpoint is the
// value for OTEL_EXPORTER_OTLP_ENDPOINT.
func (s *Sink) ListenHTTP() (endpoint string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// ListenGRPC serves OTLP/gRPC on a free loopback port until stop.
func (s *Sink) ListenGRPC() (endpoint string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, grpcService{sink: s})
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), srv.Stop, nil
}

type grpcService struct {
	collectortrace.UnimplementedTraceServiceServer
	sink *Sink
}

func (g grpcService) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	g.sink.add(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (s *Sink) add(req *collectortrace.ExportTraceServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.count++
				if s.Discard {
					continue
				}
				attrs := map[string]string{}
				for _, kv := range rs.GetResource().GetAttributes() {
					attrs["resource."+kv.GetKey()] = valueText(kv.GetValue())
				}
				for _, kv := range sp.GetAttributes() {
					attrs[kv.GetKey()] = valueText(kv.GetValue())
				}
				s.spans = append(s.spans, Span{Name: sp.GetName(), TraceID: hex.EncodeToString(sp.GetTraceId()), Attributes: attrs})
			}
		}
	}
	close(s.added)
	s.added = make(chan struct{})
}

func valueText(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	}
	return v.String()
}

// Count is how many spans arrived.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Await returns the spans received once match accepts them, or what arrived when ctx
// ends.
func (s *Sink) Await(ctx context.Context, match func([]Span) bool) ([]Span, error) {
	for {
		s.mu.Lock()
		spans, added := append([]Span(nil), s.spans...), s.added
		s.mu.Unlock()
		if match(spans) {
			return spans, nil
		}
		select {
		case <-added:
		case <-ctx.Done():
			return spans, ctx.Err()
		}
	}
}
