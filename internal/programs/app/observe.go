package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/apiops-worker/apiops-worker/client"
	"github.com/apiops-worker/apiops-worker/internal/buildinfo"
	"github.com/apiops-worker/apiops-worker/internal/metrics"
)

// readiness is what the health endpoints and the service status ask.
type readiness interface {
	Ready() error
	Active() bool
	// Alive is nil unless the process cannot recover on its own (its NATS connection
	// is closed for good): an orchestrator should restart it.
	Alive() error
}

// startHTTP serves /metrics, /healthz and /readyz on addr until stop is called, and
// Go's profiles under /debug/pprof/ when profiles is set.
func startHTTP(addr string, reg *prometheus.Registry, ready readiness, profiles bool, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr (APIOPS_WORKER_HTTP_ADDR): %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready.Alive(); err != nil {
			http.Error(w, "not alive: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if profiles {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready: " + metrics.Role(ready.Active()) + "\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped", zap.Error(err))
		}
	}()
	log.Info("serving metrics and health", zap.String("addr", ln.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// serviceStatus is the body of the service's status endpoint and its statistics.
type serviceStatus struct {
	Ready string `json:"ready"`
	// SealKey is the current public key publishers seal secrets for (see package
	// seal), SealKeys every key this instance opens with, the current one last.
	SealKey  string   `json:"sealKey,omitempty"`
	SealKeys []string `json:"sealKeys,omitempty"`
	metrics.Stats
}

// service is the worker's registration in NATS service discovery ($SRV), so that
// `nats micro ls` and `nats micro stats apiops-worker` show every instance with its
// counts. Its one endpoint, <prefix>.worker.status, answers with readiness and counts.
// The INFO metadata carries the current seal key; a service's metadata is fixed when
// it registers, so a new key registers the service again.
type service struct {
	nc       *nats.Conn
	prefix   string
	ready    readiness
	metrics  *metrics.Metrics
	sealKeys func() []string // current last; none without keys
	// maxCommandSize is announced, so that publishers refuse a larger command
	// themselves, naming the limit (client.DiscoverMaxCommandSize).
	maxCommandSize int32

	mu  sync.Mutex
	svc micro.Service
}

func (s *service) status() serviceStatus {
	st := serviceStatus{Ready: "yes", SealKeys: s.sealKeys(), Stats: s.metrics.Stats()}
	if n := len(st.SealKeys); n > 0 {
		st.SealKey = st.SealKeys[n-1]
	}
	if err := s.ready.Ready(); err != nil {
		st.Ready = err.Error()
	}
	return st
}

// register adds the service, or replaces it with one that announces the keys held
// now; if that fails, the one registered before stays.
func (s *service) register() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Earlier versions announce no "fleet", or "lease": see olderInstances.
	metadata := map[string]string{"fleet": fleetKind}
	if s.maxCommandSize > 0 {
		metadata["max_command_size"] = strconv.Itoa(int(s.maxCommandSize))
	}
	if keys := s.sealKeys(); len(keys) > 0 {
		metadata["seal_key"], metadata["seal_keys"] = keys[len(keys)-1], strings.Join(keys, ",")
	}
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:         serviceName,
		Version:      buildinfo.Version,
		Description:  "Executes APIOps commands from JetStream",
		Metadata:     metadata,
		StatsHandler: func(*micro.Endpoint) any { return s.status() },
	})
	if err != nil {
		return fmt.Errorf("register the NATS service: %w", err)
	}
	err = svc.AddEndpoint("status", micro.HandlerFunc(func(req micro.Request) {
		body, _ := json.Marshal(s.status())
		_ = req.Respond(body)
	}), micro.WithEndpointSubject(s.prefix+".worker.status"))
	if err != nil {
		_ = svc.Stop()
		return fmt.Errorf("register the NATS service's status endpoint: %w", err)
	}
	if s.svc != nil {
		_ = s.svc.Stop()
	}
	s.svc = svc
	return nil
}

func (s *service) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svc != nil {
		_ = s.svc.Stop()
	}
}

const serviceName = "apiops-worker"

// fleetKind is what this version announces as "fleet": instances take commands from one
// consumer per project, one active instance at a time.
const fleetKind = "project-consumers"

// olderInstances asks NATS service discovery for the running instances of an earlier
// version, which take commands from the consumer every instance shared: those whose
// service announces another "fleet" (none before the lease, "lease" after it). It
// waits a second for answers; an instance that cannot answer cannot hold commands past
// its AckWait either.
func olderInstances(ctx context.Context, nc *nats.Conn) ([]string, error) {
	infos, err := client.InfoCollector{
		Wait:       time.Second,
		Keep:       func(info micro.Info) bool { return info.Metadata["fleet"] != fleetKind },
		EndOnError: true, // whatever ends the wait, what came is the answer
	}.Collect(ctx, nc)
	var older []string
	for _, info := range infos {
		older = append(older, info.ID+" (version "+info.Version+")")
	}
	return older, err
}
