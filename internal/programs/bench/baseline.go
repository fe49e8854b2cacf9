package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/messages"
	"github.com/apiops-worker/apiops-worker/worker"
)

// baseline is the least a consumer can do with the worker's guarantees: inFlight
// goroutines share one pull iterator; each takes a command, sends one PUT to APIOps,
// stores a small result (awaiting JetStream's ack) and acknowledges the command
// synchronously. It has no validation, retries, idempotency store or ordering.
type baseline struct {
	js     jetstream.JetStream
	cons   jetstream.Consumer
	http   *http.Client
	apiURL string
	errMu  sync.Mutex
	err    error         // the first failure
	failed chan struct{} // closed at the first failure

	it jetstream.MessagesContext
	wg sync.WaitGroup
}

// RunLoop is `apiops-bench loop`: the baseline in a process of its own, so that its
// CPU and memory are measured as the worker's are. It takes commands from the
// consumer of the benchmark's commands until ctx ends.
func RunLoop(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("apiops-bench loop", flag.ContinueOnError)
	natsURL := fs.String("nats-url", "", "NATS URL")
	apiURL := fs.String("apiops-url", "", "APIOps URL")
	inFlight := fs.Int("in-flight", 64, "commands at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, err := nats.Connect(*natsURL, nats.Name("apiops-bench baseline"))
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// One consumer of every project's commands, configured as the active instance
	// configures a project's.
	config, err := worker.ProjectConsumerConfig(worker.Config{Concurrency: *inFlight}, projectOf(1))
	if err != nil {
		return err
	}
	config.Durable, config.FilterSubjects, config.Metadata = "bench-baseline", []string{subjects.AllCommands()}, nil
	cons, err := js.CreateOrUpdateConsumer(ctx, worker.DefaultCommandStream, config)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	b := newBaseline(js, cons, *apiURL, *inFlight)
	if err := b.start(ctx, *inFlight); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-b.failed:
	}
	b.stop()
	return b.failure()
}

func newBaseline(js jetstream.JetStream, cons jetstream.Consumer, apiURL string, inFlight int) *baseline {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = inFlight
	transport.MaxIdleConnsPerHost = inFlight
	return &baseline{js: js, cons: cons, apiURL: apiURL, http: &http.Client{Transport: transport}, failed: make(chan struct{})}
}

// start starts inFlight goroutines taking commands until stop.
func (b *baseline) start(ctx context.Context, inFlight int) error {
	it, err := b.cons.Messages(jetstream.PullMaxMessages(inFlight))
	if err != nil {
		return fmt.Errorf("baseline: pull: %w", err)
	}
	b.it = it
	for range inFlight {
		b.wg.Go(func() {
			for {
				msg, err := it.Next()
				if errors.Is(err, jetstream.ErrNoHeartbeat) {
					continue // the iterator goes on
				}
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if err != nil {
					b.fail(fmt.Errorf("pull: %w", err))
					return
				}
				if err := b.handle(ctx, msg); err != nil {
					b.fail(err)
					_ = msg.Nak()
				}
			}
		})
	}
	return nil
}

// stop stops taking commands and waits for those in flight.
func (b *baseline) stop() {
	b.it.Stop()
	b.wg.Wait()
	b.http.CloseIdleConnections()
}

// failure returns the first error a command met, if any.
func (b *baseline) failure() error {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.err
}

func (b *baseline) fail(err error) {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	if b.err == nil {
		b.err = fmt.Errorf("baseline: %w", err)
		close(b.failed)
	}
}

func (b *baseline) handle(ctx context.Context, msg jetstream.Msg) error {
	received := time.Now()
	var cmd struct {
		ID     string `json:"id"`
		Params struct {
			Username     string `json:"username"`
			KeystoreName string `json:"keystoreName"`
		} `json:"params"`
	}
	if err := json.Unmarshal(msg.Data(), &cmd); err != nil {
		return fmt.Errorf("decode command: %w", err)
	}
	project, _, err := subjects.ParseCommand(msg.Subject())
	if err != nil {
		return err
	}
	if err := b.put(ctx, project, cmd.Params.Username, cmd.Params.KeystoreName); err != nil {
		return err
	}
	finished := time.Now()

	result := fmt.Appendf(nil, `{"id":%q,"status":"succeeded","receivedAt":%q,"finishedAt":%q}`,
		cmd.ID, received.UTC().Format(time.RFC3339Nano), finished.UTC().Format(time.RFC3339Nano))
	subject := strings.Replace(msg.Subject(), ".cmd.", ".result.", 1)
	out := &nats.Msg{Subject: subject, Header: nats.Header{messages.HeaderMsgID: {cmd.ID}}, Data: result}
	if _, err := b.js.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("publish result: %w", err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

// put sets the credential's truststore: PUT …/credentials/{username}/truststore/{keystore}/.
func (b *baseline) put(ctx context.Context, project, user, keystore string) error {
	u := b.apiURL + "/apiops/projects/" + url.PathEscape(project) + "/credentials/" +
		url.PathEscape(user) + "/truststore/" + url.PathEscape(keystore) + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		return fmt.Errorf("APIOps: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("APIOps: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("APIOps: PUT %s: %s: %s", u, resp.Status, body)
	}
	return nil
}
