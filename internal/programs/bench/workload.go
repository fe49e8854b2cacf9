package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// The benchmark's commands: credential.truststore.set of keystore bench-trust, each on
// its own credential, so that per-resource ordering never serialises them. Commands
// 1…perProject are project Bench's, the next perProject Bench2's, and so on: the worker
// keeps at most 10,000 waiting commands per subject, and a project's commands of one
// type are one subject.
const (
	commandType = "credential.truststore.set"
	keystore    = "bench-trust"
	token       = "bench-token"
	perProject  = 9000
)

var subjects = messages.Subjects{}

func username(i int) string  { return fmt.Sprintf("user-%06d", i) }
func commandID(i int) string { return fmt.Sprintf("bench-%06d", i) }

func projectOf(i int) string {
	if k := (i-1)/perProject + 1; k > 1 {
		return fmt.Sprintf("Bench%d", k)
	}
	return "Bench"
}

// writeSeed writes a simulator seed with credentials user-000001 … user-<n>, each in
// its project, into dir.
func writeSeed(dir string, n int) (string, error) {
	seed := simulator.Seed{Token: token, Projects: map[string]simulator.ProjectSeed{}}
	for i := 1; i <= n; i++ {
		p, ok := seed.Projects[projectOf(i)]
		if !ok {
			p = simulator.ProjectSeed{
				Environments: []string{"production", "staging"},
				Credentials:  map[string]simulator.CredentialState{},
				Keystores:    []string{keystore},
				Keys:         map[string]string{},
				APIProxies:   map[string]simulator.MTLSSettings{},
			}
			seed.Projects[projectOf(i)] = p
		}
		p.Credentials[username(i)] = simulator.CredentialState{}
	}
	data, err := json.Marshal(seed)
	if err != nil {
		return "", fmt.Errorf("encode seed: %w", err)
	}
	path := filepath.Join(dir, "bench-seed.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("write seed: %w", err)
	}
	return path, nil
}

// publishBacklog publishes commands 1…n asynchronously and waits until JetStream has
// stored every one of them.
func publishBacklog(ctx context.Context, nc *nats.Conn, n int) error {
	var (
		mu       sync.Mutex
		firstErr error
	)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2048),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			mu.Lock()
			defer mu.Unlock()
			if firstErr == nil {
				firstErr = err
			}
		}))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	for i := 1; i <= n; i++ {
		id, project := commandID(i), projectOf(i)
		data := fmt.Appendf(nil, `{"id":%q,"params":{"username":%q,"keystoreName":%q}}`, id, username(i), keystore)
		msg := &nats.Msg{Subject: subjects.Command(project, commandType), Header: nats.Header{messages.HeaderMsgID: {messages.MsgID(project, id)}}, Data: data}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); err != nil {
			return fmt.Errorf("publish command %d: %w", i, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return fmt.Errorf("publish commands: %w", firstErr)
	}
	got, err := streamMsgs(ctx, js, worker.DefaultCommandStream)
	if err != nil {
		return err
	}
	if got != uint64(n) {
		return fmt.Errorf("published %d commands but %s holds %d", n, worker.DefaultCommandStream, got)
	}
	return nil
}

// streamMsgs returns how many messages a stream holds.
func streamMsgs(ctx context.Context, js jetstream.JetStream, name string) (uint64, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", name, err)
	}
	return s.CachedInfo().State.Msgs, nil
}

// storedResult is what the benchmark reads of a stored result.
type storedResult struct {
	ID         string          `json:"id"`
	Status     messages.Status `json:"status"`
	ReceivedAt time.Time       `json:"receivedAt"`
	FinishedAt time.Time       `json:"finishedAt"`
}

// results are what the stored results say of a run.
type results struct {
	latencies []time.Duration // finishedAt − receivedAt of each
	span      time.Duration   // the last finishedAt − the first receivedAt
}

// readResults reads every result in the result stream. Any result that did not succeed
// is an error: the benchmark measures successful work.
func readResults(ctx context.Context, js jetstream.JetStream) (results, error) {
	var out results
	n, err := streamMsgs(ctx, js, worker.DefaultResultStream)
	if err != nil || n == 0 {
		return out, err
	}
	cons, err := js.OrderedConsumer(ctx, worker.DefaultResultStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return out, fmt.Errorf("read results: %w", err)
	}
	out.latencies = make([]time.Duration, 0, n)
	var first, last time.Time
	var failed []string
	for uint64(len(out.latencies)) < n {
		batch, err := cons.Fetch(int(min(1000, n-uint64(len(out.latencies)))), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return out, fmt.Errorf("read results: %w", err)
		}
		before := len(out.latencies)
		for msg := range batch.Messages() {
			var r storedResult
			if err := json.Unmarshal(msg.Data(), &r); err != nil {
				return out, fmt.Errorf("decode result %q: %w", msg.Data(), err)
			}
			if r.Status != messages.StatusSucceeded {
				failed = append(failed, string(msg.Data()))
			}
			out.latencies = append(out.latencies, r.FinishedAt.Sub(r.ReceivedAt))
			if first.IsZero() || r.ReceivedAt.Before(first) {
				first = r.ReceivedAt
			}
			if r.FinishedAt.After(last) {
				last = r.FinishedAt
			}
		}
		if err := batch.Error(); err != nil {
			return out, fmt.Errorf("read results: %w", err)
		}
		if len(out.latencies) == before {
			return out, fmt.Errorf("read results: got %d of %d", len(out.latencies), n)
		}
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("%d of %d results did not succeed; first: %s", len(failed), n, failed[0])
	}
	out.span = last.Sub(first)
	return out, nil
}
