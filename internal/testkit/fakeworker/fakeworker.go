// Package fakeworker is a stand-in for apiops-worker in tests of publishers (the client
// package, apiopsctl): it creates the streams the worker would, consumes commands from
// APIOPS_COMMANDS, and answers each with a result on the result subject and on the
// command's replyTo, keeping the first result per id and answering repeats from it
// (marked "replayed", on the replyTo only), as the real worker does. It never calls
// APIOps.
package fakeworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Stream and consumer names, as docs/contract.md gives them.
const (
	CommandStream = "APIOPS_COMMANDS"
	ResultStream  = "APIOPS_RESULTS"
	Consumer      = "apiops-worker"
)

// CreateStreams creates the command stream (work-queue retention, 10-minute duplicate
// window) and the result stream for prefix ("" for messages.DefaultPrefix).
func CreateStreams(t testing.TB, js jetstream.JetStream, prefix string) (commands, results jetstream.Stream) {
	t.Helper()
	subjects := messages.Subjects{Prefix: prefix}
	ctx := context.Background()
	commands, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       CommandStream,
		Subjects:   []string{subjects.AllCommands()},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.MemoryStorage,
		Duplicates: 10 * time.Minute,
	})
	if err != nil {
		t.Fatalf("create %s: %v", CommandStream, err)
	}
	results, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       ResultStream,
		Subjects:   []string{subjects.AllResults()},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.MemoryStorage,
		Duplicates: 10 * time.Minute,
	})
	if err != nil {
		t.Fatalf("create %s: %v", ResultStream, err)
	}
	return commands, results
}

// Options configure a Worker.
type Options struct {
	// Prefix of the subjects; "" for messages.DefaultPrefix.
	Prefix string
	// Outcome, when set, is called for each command the worker executes (not for
	// repeats of an id, nor for invalid commands) with the default result: succeeded,
	// one attempt and, except for proxy.mtls.update, a deployment to production and
	// staging. It may change the result; returning false drops the command instead
	// (acknowledged without any result, as if lost).
	Outcome func(cmd *messages.Command, r *messages.Result) bool
}

// Received is one command message as it arrived.
type Received struct {
	Subject string
	Header  nats.Header
	Data    []byte
}

// Worker is a running fake worker.
type Worker struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	subjects messages.Subjects
	outcome  func(*messages.Command, *messages.Result) bool

	mu         sync.Mutex
	received   []Received
	results    map[string]*messages.Result
	executions map[string]int
	errs       []error
}

// Start starts a worker on nc; CreateStreams must have been called. It stops when the
// test ends and then reports any error it met.
func Start(t testing.TB, nc *nats.Conn, opts Options) *Worker {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	w := &Worker{
		nc: nc, js: js, subjects: messages.Subjects{Prefix: opts.Prefix}, outcome: opts.Outcome,
		results: make(map[string]*messages.Result), executions: make(map[string]int),
	}
	cons, err := js.CreateOrUpdateConsumer(context.Background(), CommandStream, jetstream.ConsumerConfig{
		Durable:       Consumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		FilterSubject: w.subjects.AllCommands(),
	})
	if err != nil {
		t.Fatalf("create consumer: %v", err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					w.fail(fmt.Errorf("next command: %w", err))
				}
				return
			}
			if err := w.handle(msg); err != nil {
				w.fail(err)
			}
		}
	}()
	t.Cleanup(func() {
		it.Stop()
		<-done
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, err := range w.errs {
			t.Errorf("fake worker: %v", err)
		}
	})
	return w
}

func (w *Worker) fail(err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}

// Received returns every command message received so far, in arrival order.
func (w *Worker) Received() []Received {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Received(nil), w.received...)
}

// Executions returns how many times the command with id was executed (not answered
// from the stored result).
func (w *Worker) Executions(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.executions[id]
}

func (w *Worker) handle(msg jetstream.Msg) error {
	w.mu.Lock()
	w.received = append(w.received, Received{
		Subject: msg.Subject(), Header: cloneHeader(msg.Headers()), Data: append([]byte(nil), msg.Data()...),
	})
	w.mu.Unlock()

	project, typeName, err := w.subjects.ParseCommand(msg.Subject())
	if err != nil {
		_ = msg.Term()
		return err
	}
	cmd, decodeErr := messages.Decode(project, typeName, msg.Data())
	result, repeat, keep := w.outcomeFor(cmd, decodeErr)
	if !keep {
		return msg.Ack()
	}
	if !repeat {
		if err := w.publish(w.subjects.Result(project, typeName), result, true); err != nil {
			return err
		}
	}
	if cmd.ReplyTo != "" {
		reply := result
		if repeat { // as the worker marks an answer from the stored result
			copied := *result
			copied.Replayed = true
			reply = &copied
		}
		if err := w.publish(cmd.ReplyTo, reply, false); err != nil {
			return err
		}
	}
	return msg.Ack()
}

// outcomeFor returns the command's result, whether it is a stored one, and false when
// the command is to be dropped.
func (w *Worker) outcomeFor(cmd *messages.Command, decodeErr error) (r *messages.Result, repeat, keep bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if stored, ok := w.results[messages.MsgID(cmd.Project, cmd.ID)]; ok && cmd.ID != "" {
		return stored, true, true
	}
	now := time.Now().UTC()
	if decodeErr != nil {
		r = messages.Rejection(cmd, decodeErr, now)
	} else {
		w.executions[cmd.ID]++
		r = &messages.Result{
			ID: cmd.ID, Type: cmd.Type, Project: cmd.Project, CorrelationID: cmd.CorrelationID,
			Status: messages.StatusSucceeded, Attempts: 1, ReceivedAt: now, FinishedAt: now, HTTPStatus: 200,
			Warnings: cmd.Warnings(),
		}
		if cmd.CommandType().Resource != "apiProxy" {
			r.DeploymentResult = &messages.DeploymentResult{
				Success: true, Message: "Deployment completed successfully",
				EnvironmentResults: []messages.EnvironmentResult{
					{EnvironmentName: "production", Success: true, Message: "Deployed successfully"},
					{EnvironmentName: "staging", Success: true, Message: "Deployed successfully"},
				},
			}
		}
		if w.outcome != nil && !w.outcome(cmd, r) {
			return nil, false, false
		}
	}
	if r.ID != "" {
		w.results[messages.MsgID(r.Project, r.ID)] = r
	}
	return r, false, true
}

// publish sends a result to subject: stored (awaiting JetStream's ack) or core NATS.
func (w *Worker) publish(subject string, r *messages.Result, store bool) error {
	m := nats.NewMsg(subject)
	var err error
	if m.Data, err = json.Marshal(r); err != nil {
		return err
	}
	if r.ID != "" {
		m.Header.Set(messages.HeaderMsgID, messages.MsgID(r.Project, r.ID))
		m.Header.Set(messages.HeaderCommandID, r.ID)
	}
	m.Header.Set(messages.HeaderStatus, string(r.Status))
	if store {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := w.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("store result of %q: %w", r.ID, err)
		}
		return nil
	}
	if err := w.nc.PublishMsg(m); err != nil {
		return fmt.Errorf("reply to %s: %w", subject, err)
	}
	return nil
}

func cloneHeader(h nats.Header) nats.Header {
	c := make(nats.Header, len(h))
	for k, v := range h {
		c[k] = append([]string(nil), v...)
	}
	return c
}
