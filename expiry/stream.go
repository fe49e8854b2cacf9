package expiry

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/internal/jsread"
)

// StreamMaxBytes bounds the stream of the tables: each project's last table, a few
// hundred bytes per certificate, is all it keeps.
const StreamMaxBytes = 64 << 20

// StreamConfig is the stream of the tables: the last one of each project, on disk,
// with the replicas of the worker's other streams.
func StreamConfig(prefix string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              StreamName,
		Description:       "apiops-worker: the last certificate expiry table of each watched project",
		Subjects:          []string{AllSubjects(prefix)},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		MaxBytes:          StreamMaxBytes,
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
	}
}

// StreamPublisher publishes tables to StreamName, making or updating the stream
// first unless an operator manages it.
type StreamPublisher struct {
	JS       jetstream.JetStream
	Prefix   string
	Replicas int
	// Manage creates or updates the stream before the first table (and again after a
	// failed publish); false when an operator manages the streams.
	Manage bool

	mu    sync.Mutex
	ready bool
}

func (p *StreamPublisher) Publish(ctx context.Context, t Table) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Manage && !p.ready {
		if _, err := p.JS.CreateOrUpdateStream(ctx, StreamConfig(p.Prefix, p.Replicas)); err != nil {
			return fmt.Errorf("create or update stream %s: %w", StreamName, err)
		}
		p.ready = true
	}
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode the table: %w", err)
	}
	if _, err := p.JS.Publish(ctx, Subject(p.Prefix, t.Project), data); err != nil {
		p.ready = false // the stream may have been deleted: make it again next time
		return fmt.Errorf("publish to %s: %w", Subject(p.Prefix, t.Project), err)
	}
	return nil
}

// ReadTables reads the last table of each project from the stream, of the projects
// given or, with none, of every project in it.
func ReadTables(ctx context.Context, js jetstream.JetStream, prefix string, projects []string) ([]Table, error) {
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	filters := []string{AllSubjects(prefix)}
	if len(projects) > 0 {
		filters = filters[:0]
		for _, p := range projects {
			filters = append(filters, Subject(prefix, p))
		}
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
	if err != nil {
		return nil, fmt.Errorf("read the tables: %w", err)
	}
	var tables []Table
	err = jsread.Pending(ctx, c, func(m jetstream.Msg, _ *jetstream.MsgMetadata) error {
		var t Table
		if err := json.Unmarshal(m.Data(), &t); err != nil {
			return fmt.Errorf("the table on %s: %w", m.Subject(), err)
		}
		tables = append(tables, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the tables: %w", err)
	}
	return tables, nil
}
