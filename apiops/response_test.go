package apiops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops"
	"github.com/apiops-worker/apiops-worker/messages"
)

// recordedResponse is one answer of testdata/apiops/responses.json: a body as a page of
// Apinizer's documentation, its openapi.yaml or the pages the project started from show
// it (source names which), and how the worker must read it.
type recordedResponse struct {
	Name        string            `json:"name"`
	Source      string            `json:"source"`
	Status      int               `json:"status"`
	ContentType string            `json:"contentType"`
	Headers     map[string]string `json:"headers"`
	Body        json.RawMessage   `json:"body"`
	Text        *string           `json:"text"`
	Want        struct {
		// Outcome is succeeded, partial (saved, some environment did not deploy) or
		// failed.
		Outcome       string `json:"outcome"`
		Kind          string `json:"kind"`
		Code          string `json:"code"`
		Message       string `json:"message"`
		RetryAfter    string `json:"retryAfter"`
		ResultMessage string `json:"resultMessage"`
		Deployment    *struct {
			Success      bool     `json:"success"`
			Message      string   `json:"message"`
			Environments [][3]any `json:"environments"` // name, success, message
		} `json:"deployment"`
	} `json:"want"`
}

func (r recordedResponse) raw(t testing.TB) []byte {
	if r.Text != nil {
		return []byte(*r.Text)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, r.Body); err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	return buf.Bytes()
}

func recordedResponses(t testing.TB) []recordedResponse {
	t.Helper()
	data, err := os.ReadFile("../testdata/apiops/responses.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []recordedResponse
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	return cases
}

// TestRecordedResponses reads every documented answer through the client, over HTTP.
func TestRecordedResponses(t *testing.T) {
	cases := recordedResponses(t)
	if len(cases) < 40 {
		t.Fatalf("only %d recorded responses", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			body := tc.raw(t)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.ContentType != "" {
					w.Header().Set("Content-Type", tc.ContentType)
				}
				for k, v := range tc.Headers {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.Status)
				_, _ = w.Write(body)
			}))
			defer srv.Close()
			client, err := apiops.New(srv.URL, apiops.StaticToken("t"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(context.Background(), messages.APIRequest{Method: http.MethodPut, Path: []string{"apiops", "projects", "P", "credentials", "u", "truststore", "k"}})
			want := tc.Want
			if want.Outcome == "failed" {
				var e *apiops.Error
				if !errors.As(err, &e) {
					t.Fatalf("Do = %+v, %v; want an *apiops.Error", resp, err)
				}
				if e.Kind.String() != want.Kind || e.ResultCode() != want.Code || !strings.Contains(e.Message(), want.Message) {
					t.Errorf("got kind %s code %q message %q\nwant kind %s code %q message containing %q", e.Kind, e.ResultCode(), e.Message(), want.Kind, want.Code, want.Message)
				}
				if want.RetryAfter != "" && e.RetryAfter.String() != want.RetryAfter {
					t.Errorf("RetryAfter %v, want %s", e.RetryAfter, want.RetryAfter)
				}
				if len(body) > 40 && want.Code == apiops.CodeUnrecognisedResponse && strings.Contains(e.Error(), string(body[:40])) {
					t.Errorf("the error quotes the body: %v", e)
				}
				return
			}
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if outcome := map[bool]string{false: "succeeded", true: "partial"}[resp.DeployFailed()]; outcome != want.Outcome {
				t.Errorf("outcome %s, want %s", outcome, want.Outcome)
			}
			if want.Code != "" && !strings.Contains(resp.DeploymentUnrecognised, want.Message) {
				t.Errorf("unrecognised deployment %q, want %q", resp.DeploymentUnrecognised, want.Message)
			}
			if resp.Message != want.ResultMessage {
				t.Errorf("resultMessage %q, want %q", resp.Message, want.ResultMessage)
			}
			d := resp.DeploymentResult
			switch {
			case want.Deployment == nil && d != nil:
				t.Errorf("deployment %+v, want none", d)
			case want.Deployment != nil && d == nil:
				t.Errorf("no deployment, want %+v", want.Deployment)
			case d != nil:
				if d.Success != want.Deployment.Success || d.Message != want.Deployment.Message {
					t.Errorf("deployment success %v message %q, want %v %q", d.Success, d.Message, want.Deployment.Success, want.Deployment.Message)
				}
				var got [][3]any
				for _, e := range d.EnvironmentResults {
					got = append(got, [3]any{e.EnvironmentName, e.Success, e.Message})
				}
				gotJSON, _ := json.Marshal(got)
				wantJSON, _ := json.Marshal(want.Deployment.Environments)
				if len(got) == 0 {
					gotJSON = []byte("[]")
				}
				if !bytes.Equal(gotJSON, wantJSON) {
					t.Errorf("environments\n got %s\nwant %s", gotJSON, wantJSON)
				}
			}
		})
	}
}

// TestRetryAfterFromBody: a rate limit's retry_after counts as Retry-After when the
// header is missing, in whichever JSON type it came.
func TestRetryAfterFromBody(t *testing.T) {
	for _, tc := range []struct {
		body string
		want time.Duration
	}{
		{`{"error":"rate_limit_exceeded","retry_after":60}`, time.Minute},
		{`{"error":"rate_limit_exceeded","retry_after":"30"}`, 30 * time.Second},
		{`{"error":"rate_limit_exceeded","retry_after":0.5}`, 500 * time.Millisecond},
		{`{"error":"rate_limit_exceeded","retry_after":-5}`, 0},
		{`{"error":"rate_limit_exceeded","retry_after":1e300}`, 0},
		{`{"error":"rate_limit_exceeded","retry_after":"soon"}`, 0},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(tc.body))
		}))
		client, _ := apiops.New(srv.URL, apiops.StaticToken("t"))
		_, err := client.Do(context.Background(), messages.APIRequest{Method: http.MethodGet, Path: []string{"x"}})
		srv.Close()
		var e *apiops.Error
		if !errors.As(err, &e) || e.RetryAfter != tc.want || e.Kind != apiops.Transient {
			t.Errorf("%s: %v (RetryAfter %v), want transient with RetryAfter %v", tc.body, err, e.RetryAfter, tc.want)
		}
	}
}
