package worker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/apiops-worker/apiops-worker/keystores/keystorestest"
	"github.com/apiops-worker/apiops-worker/messages"
)

// The publisher's span: every worker span of its command belongs to this trace.
const (
	publisherTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	publisherSpan  = "00f067aa0ba902b7"
)

// tracedEnv is an env whose worker records its spans in memory.
func tracedEnv(t *testing.T) (*env, *tracetest.SpanRecorder) {
	e := newEnv(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	e.cfg.TracerProvider = tp
	return e, rec
}

// publishTraced publishes a command line as a traced publisher would: with traceparent.
func (e *env) publishTraced(project, typ, id string, body []byte) {
	e.t.Helper()
	msg := &nats.Msg{Subject: "apiops.cmd." + project + "." + typ, Data: body, Header: nats.Header{}}
	msg.Header.Set(messages.HeaderMsgID, messages.MsgID(project, id))
	msg.Header.Set("traceparent", "00-"+publisherTrace+"-"+publisherSpan+"-01")
	if _, err := e.js.PublishMsg(e.t.Context(), msg); err != nil {
		e.t.Fatal(err)
	}
}

// awaitSpan waits until a span named name has ended and returns it.
func awaitSpan(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	eventually(t, 10*time.Second, "span "+name, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == name {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

func childrenOf(rec *tracetest.SpanRecorder, parent trace.SpanContext) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Parent().SpanID() == parent.SpanID() {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// traceParentOf parses a traceparent header: the trace and the parent span.
func traceParentOf(t *testing.T, h string) (traceID, spanID string) {
	t.Helper()
	parts := strings.Split(h, "-")
	if len(parts) != 4 || parts[0] != "00" {
		t.Fatalf("traceparent %q", h)
	}
	return parts[1], parts[2]
}

// TestTraceFollowsACommand: a command published with traceparent yields, in the same
// trace, the worker's span under the publisher's, with children for the wait for its
// resource, each APIOps attempt (status, retry reason), the pause an outage caused,
// and the terminal writes; the APIOps request, the result and the log line carry the
// trace.
func TestTraceFollowsACommand(t *testing.T) {
	e, rec := tracedEnv(t)
	var requests atomic.Int32
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		if requests.Add(1) > 3 { // three failures in a row: an outage, the worker pauses
			return false
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}
	e.start(nil)
	line := readExample(t, "credential.truststore.set")
	cmd, err := messages.DecodeLine(line)
	if err != nil {
		t.Fatal(err)
	}
	e.publishTraced(cmd.Project, cmd.Type, cmd.ID, line)
	res := e.awaitResults(1, 30*time.Second)[cmd.ID]
	if res.Status != messages.StatusSucceeded {
		t.Fatalf("result %s", res.raw)
	}

	process := awaitSpan(t, rec, "process credential.truststore.set")
	sc := process.SpanContext()
	if sc.TraceID().String() != publisherTrace || process.Parent().SpanID().String() != publisherSpan || !process.Parent().IsRemote() {
		t.Fatalf("command span %s in trace %s under %s, want trace %s under the publisher's span %s",
			sc.SpanID(), sc.TraceID(), process.Parent().SpanID(), publisherTrace, publisherSpan)
	}
	if process.SpanKind() != trace.SpanKindConsumer || attr(process, "apiops.command.id") != cmd.ID || attr(process, "apiops.result.status") != "succeeded" {
		t.Errorf("command span kind %v, attributes %v", process.SpanKind(), process.Attributes())
	}
	var names []string
	var attempts []sdktrace.ReadOnlySpan
	for _, c := range childrenOf(rec, sc) {
		names = append(names, c.Name())
		if c.Name() == "PUT" {
			attempts = append(attempts, c)
		}
		if c.StartTime().Before(process.StartTime()) || c.EndTime().After(process.EndTime()) {
			t.Errorf("child %s outside its parent's time", c.Name())
		}
	}
	got := strings.Join(names, ",")
	for _, want := range []string{"wait for resource", "paused", "terminal writes"} {
		if !strings.Contains(got, want) {
			t.Errorf("children %s: no %q", got, want)
		}
	}
	if len(attempts) != 4 {
		t.Fatalf("%d attempt spans, want 4 (3 failures, 1 success): children %s", len(attempts), got)
	}
	for i, a := range attempts {
		wantStatus, wantRetry := "503", "http_503"
		if i == 3 {
			wantStatus = "200"
		}
		if i == 0 {
			wantRetry = ""
		}
		if a.SpanKind() != trace.SpanKindClient || attr(a, "http.response.status_code") != wantStatus ||
			attr(a, "apiops.retry.reason") != wantRetry || attr(a, "apiops.attempt") != fmt.Sprint(i+1) {
			t.Errorf("attempt %d: kind %v, attributes %v", i+1, a.SpanKind(), a.Attributes())
		}
	}
	for _, c := range childrenOf(rec, sc) {
		if c.Name() == "paused" && attr(c, "apiops.pause.reason") != "outage" {
			t.Errorf("pause span attributes %v", c.Attributes())
		}
	}

	// The last APIOps request carried its attempt's span; the result the command's.
	reqs := e.sim.Requests()
	if len(reqs) != 1 { // the simulator saw only the request that got through
		t.Fatalf("%d requests reached the simulator", len(reqs))
	}
	tid, sid := traceParentOf(t, reqs[0].TraceParent)
	if tid != publisherTrace || sid != attempts[3].SpanContext().SpanID().String() {
		t.Errorf("APIOps request traceparent %q, want the last attempt's span %s", reqs[0].TraceParent, attempts[3].SpanContext().SpanID())
	}
	tid, sid = traceParentOf(t, res.header.Get("traceparent"))
	if tid != publisherTrace || sid != sc.SpanID().String() {
		t.Errorf("result traceparent %q, want the command's span %s", res.header.Get("traceparent"), sc.SpanID())
	}
	if !strings.Contains(e.logs.String(), `"trace_id":"`+publisherTrace+`"`) {
		t.Errorf("no log line names the trace:\n%s", e.logs.String())
	}
}

// TestTraceOfAFailedCommandReachesItsDeadLetter: the dead letter and the reply carry
// the worker's span, not the publisher's, and the command span says why it failed.
func TestTraceOfAFailedCommandReachesItsDeadLetter(t *testing.T) {
	e, rec := tracedEnv(t)
	e.start(nil)
	replies, err := e.nc.SubscribeSync("_INBOX.MyProject.trace-test")
	if err != nil {
		t.Fatal(err)
	}
	line := withField(t, readExample(t, "credential.truststore.set"), "params", map[string]any{"username": "nobody", "keystoreName": "trust-2026"})
	line = withField(t, line, "replyTo", "_INBOX.MyProject.trace-test")
	cmd, _ := messages.DecodeLine(line)
	e.publishTraced(cmd.Project, cmd.Type, cmd.ID, line)
	if res := e.awaitResults(1, 30*time.Second)[cmd.ID]; res.Status != messages.StatusFailed {
		t.Fatalf("result %s", res.raw)
	}
	process := awaitSpan(t, rec, "process credential.truststore.set")
	if process.Status().Description != "failed" || attr(process, "apiops.error.code") == "" {
		t.Errorf("failed command's span: status %+v, attributes %v", process.Status(), process.Attributes())
	}
	dead := e.streamMsgs("APIOPS_DEAD")
	if len(dead) != 1 {
		t.Fatalf("%d dead letters", len(dead))
	}
	if tid, sid := traceParentOf(t, dead[0].Headers().Get("traceparent")); tid != publisherTrace || sid != process.SpanContext().SpanID().String() {
		t.Errorf("dead letter traceparent %q, want the command's span %s", dead[0].Headers().Get("traceparent"), process.SpanContext().SpanID())
	}
	reply, err := replies.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if tid, sid := traceParentOf(t, reply.Header.Get("traceparent")); tid != publisherTrace || sid != process.SpanContext().SpanID().String() {
		t.Errorf("reply traceparent %q, want the command's span %s", reply.Header.Get("traceparent"), process.SpanContext().SpanID())
	}
}

// TestTracePlanIsOneTrace: a plan is one trace, a span per step under the plan's span,
// each step's APIOps attempt under its step, each step's result carrying its step.
func TestTracePlanIsOneTrace(t *testing.T) {
	e, rec := tracedEnv(t)
	e.start(nil)
	e.publishTraced("MyProject", messages.PlanType, "rot-traced", rotationPlan("rot-traced", "plan-2031"))
	results := e.awaitResults(6, 30*time.Second)
	plan := awaitSpan(t, rec, "process plan")
	steps := map[string]sdktrace.ReadOnlySpan{}
	for _, c := range childrenOf(rec, plan.SpanContext()) {
		if strings.HasPrefix(c.Name(), "step ") {
			steps[attr(c, "apiops.command.id")] = c
		}
	}
	if len(steps) != 5 {
		t.Fatalf("%d step spans under the plan's", len(steps))
	}
	for i := range 5 {
		id := fmt.Sprintf("rot-traced:step-%d", i+1)
		step := steps[id]
		if step == nil || attr(step, "apiops.plan.step") != fmt.Sprint(i) {
			t.Fatalf("no span for %s: %v", id, steps)
		}
		var attempts int
		for _, c := range childrenOf(rec, step.SpanContext()) {
			if c.SpanKind() == trace.SpanKindClient {
				attempts++
			}
		}
		if attempts != 1 {
			t.Errorf("%s: %d attempt spans", id, attempts)
		}
		if tid, sid := traceParentOf(t, results[id].header.Get("traceparent")); tid != publisherTrace || sid != step.SpanContext().SpanID().String() {
			t.Errorf("%s result traceparent %q, want its step's span", id, results[id].header.Get("traceparent"))
		}
	}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID().String() != publisherTrace {
			t.Errorf("span %s in another trace %s", s.Name(), s.SpanContext().TraceID())
		}
	}
}

// TestNoSecretInSpans: keystore passwords and files, the APIOps token, and APIOps's
// error text (which may quote what it was sent) are in no span's name, attributes,
// events, status or resource, for commands that succeed, fail, are retried, or run
// as plan steps.
func TestNoSecretInSpans(t *testing.T) {
	const password, token = "span_secret_password_7f3a", "sim-token" // a password that reads as an error code
	file := keystorestest.Base64(keystorestest.Spec{Password: password, TrustStore: true})
	e, rec := tracedEnv(t)
	var retried atomic.Bool
	e.front = func(w http.ResponseWriter, r *http.Request) bool {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		status := http.StatusBadRequest // permanent: the command fails
		switch {
		case bytes.Contains(body, []byte("span-fails-retried")) && !retried.Swap(true):
			status = http.StatusBadGateway // once: the command is retried
		case !bytes.Contains(body, []byte("span-fails-always")):
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		// APIOps's code and text both quote what it was sent.
		_, _ = fmt.Fprintf(w, `{"error":"%s","error_description":"echo: %s %s"}`, password, password, file)
		return true
	}
	e.start(nil)
	keystore := func(id, name string) []byte {
		body, _ := json.Marshal(map[string]any{"id": id, "params": map[string]any{"name": name, "keyStoreEnvironmentList": []any{
			map[string]any{"environmentName": "production", "file": file, "password": password, "keyStoreType": "PKCS12"}}}})
		return body
	}
	e.publishTraced("MyProject", "keystore.create", "span-ok", keystore("span-ok", "span-ok-2030"))
	e.publishTraced("MyProject", "keystore.create", "span-retried", keystore("span-retried", "span-fails-retried"))
	e.publishTraced("MyProject", "keystore.create", "span-failed", keystore("span-failed", "span-fails-always"))
	e.publishTraced("MyProject", messages.PlanType, "span-plan", rotationPlan("span-plan", "span-plan-2030"))
	e.awaitResults(3+6, 60*time.Second)
	awaitSpan(t, rec, "process plan")
	eventually(t, 10*time.Second, "every command span", func() bool {
		n := 0
		for _, s := range rec.Ended() {
			if s.Name() == "process keystore.create" {
				n++
			}
		}
		return n == 3
	})
	var all bytes.Buffer
	for _, s := range rec.Ended() {
		fmt.Fprintln(&all, s.Name(), s.Attributes(), s.Status(), s.Resource().Attributes(), s.Links())
		for _, ev := range s.Events() {
			fmt.Fprintln(&all, ev.Name, ev.Attributes)
		}
	}
	for _, secret := range []string{password, file, token, planMarker, planFile} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("a span holds the secret %q", secret)
		}
	}
	if !strings.Contains(all.String(), "backoff [") {
		t.Errorf("no backoff span for the retried command:\n%s", all.String())
	}
	// The attempt's code is APIOps's, made public; the result's is the contract's own.
	if !strings.Contains(all.String(), `"apiops.retry.reason":"other"`) || !strings.Contains(all.String(), `"apiops.error.code":"http_400"`) {
		t.Errorf("the spans do not show the failures at all:\n%s", all.String())
	}
}

// TestTracingOffPassesThePublishersTrace: without a tracer provider the worker makes
// no span; a command's traceparent goes on unchanged to APIOps and the result, and its
// log line names the trace. A command without one gets none.
func TestTracingOffPassesThePublishersTrace(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	line := readExample(t, "credential.truststore.set")
	cmd, _ := messages.DecodeLine(line)
	e.publishTraced(cmd.Project, cmd.Type, cmd.ID, line)
	untraced := withField(t, withField(t, line, "id", "untraced-1"), "params", map[string]any{"username": "partner-a", "keystoreName": "trust-2026"})
	e.publishLine(untraced)
	got := e.awaitResults(2, 30*time.Second)
	want := "00-" + publisherTrace + "-" + publisherSpan + "-01"
	if h := got[cmd.ID].header.Get("traceparent"); h != want {
		t.Errorf("result traceparent %q, want the publisher's %q", h, want)
	}
	if h := got["untraced-1"].header.Get("traceparent"); h != "" {
		t.Errorf("result of an untraced command: traceparent %q", h)
	}
	for _, r := range e.sim.Requests() {
		if wantHere := map[bool]string{true: want, false: ""}[strings.Contains(r.Path, "/api-user/")]; r.TraceParent != wantHere {
			t.Errorf("APIOps request %s: traceparent %q, want %q", r.Path, r.TraceParent, wantHere)
		}
	}
	eventually(t, 5*time.Second, "the log line", func() bool {
		return strings.Contains(e.logs.String(), `"trace_id":"`+publisherTrace+`"`)
	})
}
