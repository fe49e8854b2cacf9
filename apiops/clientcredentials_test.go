package apiops

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/messages"
)

const tokenPath = "/apiops/auth/token"

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// tokenServer is an APIOps token endpoint: answer writes each response; requests
// counts them and form holds the last form body.
type tokenServer struct {
	*httptest.Server
	requests atomic.Int32
	mu       sync.Mutex
	form     url.Values
	header   http.Header
	rawQuery string
}

func newTokenServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) *tokenServer {
	t.Helper()
	ts := &tokenServer{}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(ts.requests.Add(1))
		if r.Method != http.MethodPost || r.URL.Path != tokenPath {
			http.Error(w, "wrong endpoint", http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		ts.mu.Lock()
		ts.form, ts.header, ts.rawQuery = form, r.Header.Clone(), r.URL.RawQuery
		ts.mu.Unlock()
		answer(w, r, n)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) lastForm() (url.Values, http.Header, string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.form, ts.header, ts.rawQuery
}

func (ts *tokenServer) count() int { return int(ts.requests.Load()) }

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// numberedToken answers token-<n> that expires after expiresIn ("" for none).
func numberedToken(expiresIn string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, n int) {
		body := fmt.Sprintf(`{"access_token":"token-%d","token_type":"Bearer"`, n)
		if expiresIn != "" {
			body += `,"expires_in":` + expiresIn
		}
		writeJSON(w, http.StatusOK, body+"}")
	}
}

func newTestCC(t *testing.T, url string, secret func() (string, error), opts ...Option) (*ClientCredentials, *fakeClock) {
	t.Helper()
	cc, err := NewClientCredentials(url+tokenPath, "api-user", secret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	cc.now = clock.Now
	return cc, clock
}

func mustToken(t *testing.T, cc *ClientCredentials, want string) {
	t.Helper()
	got, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if got != want {
		t.Fatalf("Token = %q, want %q", got, want)
	}
}

func TestClientCredentialsSendsFormParams(t *testing.T) {
	ts := newTokenServer(t, numberedToken("3600"))
	cc, _ := newTestCC(t, ts.URL, SecretValue("p@ss word&=x"), WithUserAgent("apiops-worker/test"))
	mustToken(t, cc, "token-1")
	form, header, rawQuery := ts.lastForm()
	want := url.Values{"grant_type": {"client_credentials"}, "client_id": {"api-user"}, "client_secret": {"p@ss word&=x"}}
	if form.Encode() != want.Encode() {
		t.Errorf("form %v, want %v", form, want)
	}
	if rawQuery != "" {
		t.Errorf("query %q: the credentials belong in the body", rawQuery)
	}
	if a := header.Get("Authorization"); a != "" {
		t.Errorf("Authorization header %q: the credentials go in the form, not Basic auth", a)
	}
	if ct := header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type %q", ct)
	}
	if ua, accept := header.Get("User-Agent"), header.Get("Accept"); ua != "apiops-worker/test" || accept != "application/json" {
		t.Errorf("User-Agent %q, Accept %q", ua, accept)
	}
}

func TestClientCredentialsCachesToken(t *testing.T) {
	ts := newTokenServer(t, numberedToken("3600"))
	cc, clock := newTestCC(t, ts.URL, SecretValue("s"))
	for range 10 {
		mustToken(t, cc, "token-1")
		clock.Advance(time.Minute)
	}
	if n := ts.count(); n != 1 {
		t.Errorf("%d token requests for 10 Token calls, want 1", n)
	}
}

func TestClientCredentialsRefreshesBeforeExpiry(t *testing.T) {
	for _, tc := range []struct {
		expiresIn string
		refresh   time.Duration // lifetime minus a quarter of it, at most 30 s
	}{
		{"3", 2250 * time.Millisecond},
		{"3600", 3570 * time.Second},
		{`"120"`, 90 * time.Second}, // expires_in as a string
	} {
		t.Run(tc.expiresIn, func(t *testing.T) {
			ts := newTokenServer(t, numberedToken(tc.expiresIn))
			cc, clock := newTestCC(t, ts.URL, SecretValue("s"))
			mustToken(t, cc, "token-1")
			clock.Advance(tc.refresh - time.Millisecond)
			mustToken(t, cc, "token-1")
			clock.Advance(time.Millisecond)
			mustToken(t, cc, "token-2")
			mustToken(t, cc, "token-2")
			if n := ts.count(); n != 2 {
				t.Errorf("%d requests, want 2", n)
			}
		})
	}
}

// Neither expires_in nor token_type is promised: the token is then kept until Refresh.
func TestClientCredentialsWithoutExpiresInKeepsTokenUntilRefresh(t *testing.T) {
	ts := newTokenServer(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		writeJSON(w, http.StatusOK, fmt.Sprintf(`{"access_token":"token-%d"}`, n))
	})
	cc, clock := newTestCC(t, ts.URL, SecretValue("s"))
	mustToken(t, cc, "token-1")
	clock.Advance(1000 * time.Hour)
	mustToken(t, cc, "token-1")
	if n := ts.count(); n != 1 {
		t.Fatalf("%d requests before Refresh, want 1", n)
	}
	cc.Refresh("token-1")
	mustToken(t, cc, "token-2")
	mustToken(t, cc, "token-2")
	if n := ts.count(); n != 2 {
		t.Errorf("%d requests after Refresh, want 2", n)
	}
}

func TestClientCredentialsErrors(t *testing.T) {
	html := func(status int) func(http.ResponseWriter, *http.Request, int) {
		return func(w http.ResponseWriter, _ *http.Request, _ int) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, "<html><body>Bad Gateway from the proxy</body></html>")
		}
	}
	jsonAnswer := func(status int, body string) func(http.ResponseWriter, *http.Request, int) {
		return func(w http.ResponseWriter, _ *http.Request, _ int) { writeJSON(w, status, body) }
	}
	cases := []struct {
		name                string
		answer              func(http.ResponseWriter, *http.Request, int)
		kind                Kind
		status              int
		code, desc, errText string
	}{
		{"400 OAuth", jsonAnswer(400, `{"error":"unsupported_grant_type","error_description":"GrantType value must be client_credentials!"}`),
			Unauthorized, 400, "unsupported_grant_type", "GrantType value must be client_credentials!", ""},
		{"401 OAuth", jsonAnswer(401, `{"error":"unauthorized_client","error_description":"Bad credentials"}`),
			Unauthorized, 401, "unauthorized_client", "Bad credentials", ""},
		{"401 status/resultMessage", jsonAnswer(401, `{"status":"FAILURE","resultMessage":"Bad credentials"}`),
			Unauthorized, 401, "", "Bad credentials", ""},
		{"500 OAuth", jsonAnswer(500, `{"error":"server_error","error_description":"An unexpected error occurred"}`),
			Transient, 500, "server_error", "An unexpected error occurred", ""},
		{"502 HTML", html(502), Transient, 502, "", "", "unrecognised body (text/html, 52 bytes)"},
		{"404 HTML: wrong token URL", html(404), Unauthorized, 404, "", "", "unrecognised body (text/html, 52 bytes)"},
		{"200 HTML", html(200), Unauthorized, 200, "", "", "unrecognised body (text/html, 52 bytes)"},
		{"200 without access_token", jsonAnswer(200, `{"token_type":"Bearer","expires_in":3600}`),
			Unauthorized, 200, "", "", "token response holds no access_token"},
		{"200 with an OAuth error", jsonAnswer(200, `{"error":"invalid_client","error_description":"no such user"}`),
			Unauthorized, 200, "invalid_client", "no such user", ""},
		{"429 with Retry-After", func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Retry-After", "7")
			jsonAnswer(429, `{"error":"rate_limited","error_description":"slow down"}`)(w, r, n)
		}, Transient, 429, "rate_limited", "slow down", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServer(t, tc.answer)
			cc, _ := newTestCC(t, ts.URL, SecretValue("s3cret"))
			_, err := cc.Token(context.Background())
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if e.Op != "POST "+tokenPath || e.Kind != tc.kind || e.StatusCode != tc.status || e.Code != tc.code || e.Description != tc.desc {
				t.Errorf("error %+v, want kind %v status %d code %q description %q", e, tc.kind, tc.status, tc.code, tc.desc)
			}
			if tc.errText != "" && (e.Err == nil || e.Err.Error() != tc.errText) {
				t.Errorf("Err %v, want %q", e.Err, tc.errText)
			}
			if tc.name == "429 with Retry-After" && e.RetryAfter != 7*time.Second {
				t.Errorf("RetryAfter %v", e.RetryAfter)
			}
			if strings.Contains(err.Error(), "proxy") || strings.Contains(err.Error(), "<html>") || strings.Contains(err.Error(), "{") {
				t.Errorf("error %q quotes the body", err)
			}
			// Nothing cached: the next Token asks again.
			_, _ = cc.Token(context.Background())
			if n := ts.count(); n != 2 {
				t.Errorf("%d requests after two failed Token calls, want 2", n)
			}
		})
	}
}

func TestClientCredentialsNetworkFailureIsTransient(t *testing.T) {
	ts := newTokenServer(t, numberedToken("60"))
	ts.Close() // nobody listens any more
	cc, _ := newTestCC(t, ts.URL, SecretValue("s3cret"))
	_, err := cc.Token(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 0 || e.Kind != Transient || e.Code != "" || e.Err == nil {
		t.Fatalf("error %#v, want a Transient *Error without a status", err)
	}
	if e.ResultCode() != "network_error" || !IsRetryable(err) {
		t.Errorf("ResultCode %q, retryable %v", e.ResultCode(), IsRetryable(err))
	}
	if !strings.HasPrefix(err.Error(), "POST "+tokenPath+": ") {
		t.Errorf("error %q", err)
	}
}

func TestClientCredentialsTimeout(t *testing.T) {
	release := make(chan struct{})
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	cc, _ := newTestCC(t, ts.URL, SecretValue("s"), WithTimeout(50*time.Millisecond))
	_, err := cc.Token(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 0 || e.Kind != Transient || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("error %v, want a Transient time-out", err)
	}
}

// A server may echo the secret back, in its error description or a page; the error
// must not carry it on, in whatever form the server echoes it.
func TestClientCredentialsScrubsEchoedSecret(t *testing.T) {
	const secret = "S3cr3t/p@ss w+rd&<x>"
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request, int)
	}{
		{"error_description", func(w http.ResponseWriter, r *http.Request, _ int) {
			writeJSON(w, 401, fmt.Sprintf(`{"error":%q,"error_description":"Bad credentials for %s, password %s (%s)"}`,
				"bad_"+secret, "api-user", secret, strings.ToUpper(secret)))
		}},
		{"the form body echoed", func(w http.ResponseWriter, r *http.Request, _ int) {
			writeJSON(w, 400, fmt.Sprintf(`{"error":"invalid_request","error_description":"cannot use %s"}`, url.Values{
				"grant_type": {"client_credentials"}, "client_id": {"api-user"}, "client_secret": {secret}}.Encode()))
		}},
		{"resultMessage", func(w http.ResponseWriter, r *http.Request, _ int) {
			writeJSON(w, 401, fmt.Sprintf(`{"status":"FAILURE","resultMessage":"wrong password %s"}`, url.PathEscape(secret)))
		}},
		{"HTML page", func(w http.ResponseWriter, r *http.Request, _ int) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(401)
			fmt.Fprintf(w, "<html><body>password %s was wrong</body></html>", strings.ReplaceAll(secret, "&", "&amp;"))
		}},
		{"HTML page as 200", func(w http.ResponseWriter, r *http.Request, _ int) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, "<html><body>%s</body></html>", secret)
		}},
		{"unparseable content type", func(w http.ResponseWriter, r *http.Request, _ int) {
			w.Header().Set("Content-Type", "text/"+secret)
			w.WriteHeader(500)
			fmt.Fprintf(w, "%s", secret)
		}},
		{"content type", func(w http.ResponseWriter, r *http.Request, _ int) {
			w.Header().Set("Content-Type", "application/S3cr3tPass") // ParseMediaType lowercases it
			w.WriteHeader(500)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServer(t, tc.answer)
			secret := secret
			if tc.name == "content type" {
				secret = "S3cr3tPass"
			}
			cc, _ := newTestCC(t, ts.URL, SecretValue(secret))
			_, err := cc.Token(context.Background())
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v", err)
			}
			texts := []string{err.Error(), e.Message(), e.ResultCode(), e.Code, e.Description, fmt.Sprintf("%+v %#v", e, e)}
			for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
				texts = append(texts, u.Error())
			}
			for _, text := range texts {
				for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), "S3cr3t", "s3cr3t"} {
					if strings.Contains(strings.ToLower(text), strings.ToLower(form)) {
						t.Errorf("%q holds the secret (as %q)", text, form)
					}
				}
			}
			t.Log(err)
		})
	}
}

func TestClientCredentialsConcurrentCallsShareOneFetch(t *testing.T) {
	const callers = 20
	release := make(chan struct{})
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		<-release
		numberedToken("3600")(w, r, n)
	})
	cc, _ := newTestCC(t, ts.URL, SecretValue("s"))
	joined := make(chan struct{}, callers)
	cc.joined = func() { joined <- struct{}{} }
	tokens := make(chan string, callers)
	errs := make(chan error, callers)
	for range callers {
		go func() {
			token, err := cc.Token(context.Background())
			tokens <- token
			errs <- err
		}()
	}
	for range callers { // every caller waits for the fetch before it may finish
		<-joined
	}
	close(release)
	for range callers {
		if token, err := <-tokens, <-errs; err != nil || token != "token-1" {
			t.Errorf("Token = %q, %v", token, err)
		}
	}
	if n := ts.count(); n != 1 {
		t.Errorf("%d requests for %d concurrent Token calls, want 1", n, callers)
	}
}

// A caller that gives up does not abort the fetch: the next caller gets its token.
func TestClientCredentialsCanceledCallerLeavesFetchRunning(t *testing.T) {
	release := make(chan struct{})
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		<-release
		numberedToken("3600")(w, r, n)
	})
	cc, _ := newTestCC(t, ts.URL, SecretValue("s"))
	ctx, cancel := context.WithCancel(context.Background())
	cc.joined = cancel
	_, err := cc.Token(ctx)
	if !errors.Is(err, context.Canceled) || KindOf(err) != Transient {
		t.Fatalf("error %v, want a Transient context.Canceled", err)
	}
	cc.joined = nil
	close(release)
	mustToken(t, cc, "token-1")
	if n := ts.count(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestClientCredentialsRereadsSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(path, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := newTokenServer(t, numberedToken("60"))
	cc, clock := newTestCC(t, ts.URL, SecretFile(path))
	secretSent := func() string {
		form, _, _ := ts.lastForm()
		return form.Get("client_secret")
	}
	mustToken(t, cc, "token-1")
	if s := secretSent(); s != "first" {
		t.Fatalf("secret sent %q, want %q", s, "first")
	}
	if err := os.WriteFile(path, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	cc.Refresh("token-1") // as after a 401
	mustToken(t, cc, "token-2")
	if s := secretSent(); s != "second" {
		t.Errorf("secret sent after Refresh %q, want %q", s, "second")
	}
	if err := os.WriteFile(path, []byte("third\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute) // the token expires
	mustToken(t, cc, "token-3")
	if s := secretSent(); s != "third" {
		t.Errorf("secret sent after expiry %q, want %q", s, "third")
	}
}

func TestClientCredentialsUnreadableSecretSendsNothing(t *testing.T) {
	ts := newTokenServer(t, numberedToken("60"))
	for name, secret := range map[string]func() (string, error){
		"missing file": SecretFile(filepath.Join(t.TempDir(), "none")),
		"empty file":   SecretFile(writeFile(t, "\n")),
		"empty value":  SecretValue(""),
	} {
		cc, _ := newTestCC(t, ts.URL, secret)
		_, err := cc.Token(context.Background())
		var e *Error
		if !errors.As(err, &e) || e.Kind != Unauthorized || e.StatusCode != 0 || e.Op != "POST "+tokenPath {
			t.Errorf("%s: error %#v, want Unauthorized without a status", name, err)
		}
	}
	if n := ts.count(); n != 0 {
		t.Errorf("%d requests sent without a secret", n)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The token request trusts what APIOps requests trust: WithCAFile applies.
func TestClientCredentialsUsesTLSOptions(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		numberedToken("60")(w, r, 1)
	}))
	defer srv.Close()
	caFile := writeFile(t, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))

	cc, _ := newTestCC(t, srv.URL, SecretValue("s"), WithCAFile(caFile))
	mustToken(t, cc, "token-1")

	untrusting, _ := newTestCC(t, srv.URL, SecretValue("s"))
	_, err := untrusting.Token(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 0 || e.Kind != Transient {
		t.Errorf("without the CA: %v, want a Transient *Error without status", err)
	}
}

// A redirect could carry the secret elsewhere: it is reported, not followed.
func TestClientCredentialsDoesNotFollowRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		numberedToken("60")(w, r, 1)
	}))
	defer other.Close()
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		http.Redirect(w, r, other.URL+tokenPath, http.StatusTemporaryRedirect)
	})
	cc, _ := newTestCC(t, ts.URL, SecretValue("s"))
	_, err := cc.Token(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusTemporaryRedirect || e.Kind != Unauthorized {
		t.Errorf("error %v, want the 307 as Unauthorized", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

func TestNewClientCredentialsChecksArguments(t *testing.T) {
	secret := SecretValue("s")
	for _, tc := range []struct {
		url, id string
		secret  func() (string, error)
		opts    []Option
		want    string
	}{
		{"ftp://h/apiops/auth/token", "u", secret, nil, "must be http:// or https://"},
		{"https:///apiops/auth/token", "u", secret, nil, "with a host"},
		{"https://h/apiops/auth/token", "", secret, nil, "client id is empty"},
		{"https://h/apiops/auth/token", "u", nil, nil, "secret source is nil"},
		{"https://h/apiops/auth/token", "u", secret, []Option{WithTimeout(0)}, "timeout must be positive"},
		{"https://u:pass\x7f@h/apiops/auth/token", "u", secret, nil, "APIOps token URL: net/url: invalid control character in URL"},
	} {
		if _, err := NewClientCredentials(tc.url, tc.id, tc.secret, tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: error %v, want %q", tc.url, tc.id, err, tc.want)
		}
	}
	cc, err := NewClientCredentials("https://h/base%2Fx/apiops/auth/token", "u", secret)
	if err != nil || cc.op != "POST /base%2Fx/apiops/auth/token" {
		t.Errorf("op %q, %v", cc.op, err)
	}
}

// A token endpoint that fails while the token in hand still works does not fail the
// caller: the refresh was early, and the old token is used until it expires.
func TestClientCredentialsFailedEarlyRefreshKeepsValidToken(t *testing.T) {
	var failing atomic.Bool
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if failing.Load() {
			writeJSON(w, http.StatusInternalServerError, `{"error":"server_error","error_description":"An unexpected error occurred"}`)
			return
		}
		numberedToken("100")(w, r, n)
	})
	cc, clock := newTestCC(t, ts.URL, SecretValue("s"))
	mustToken(t, cc, "token-1")
	failing.Store(true)
	clock.Advance(80 * time.Second) // past the refresh at 75 s, before the expiry at 100 s
	mustToken(t, cc, "token-1")
	if n := ts.count(); n != 2 {
		t.Errorf("%d token requests, want the early refresh tried once", n)
	}
	clock.Advance(20 * time.Second)
	if _, err := cc.Token(context.Background()); err == nil {
		t.Error("an expired token was handed out while the endpoint fails")
	}
	failing.Store(false)
	mustToken(t, cc, "token-4")
}

// Many requests refused the same token at once: one new token serves them all.
func TestClientCredentialsConcurrentRefusalsFetchOnce(t *testing.T) {
	var latest atomic.Value
	ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		latest.Store(fmt.Sprintf("token-%d", n))
		numberedToken("")(w, r, n)
	})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+latest.Load().(string) {
			writeJSON(w, http.StatusUnauthorized, `{"status":"FAILURE","resultMessage":"Token is not valid!"}`)
			return
		}
		writeJSON(w, http.StatusOK, `{"status":"SUCCESS"}`)
	}))
	defer api.Close()
	cc, _ := newTestCC(t, ts.URL, SecretValue("s"))
	client, err := New(api.URL, cc)
	if err != nil {
		t.Fatal(err)
	}
	mustToken(t, cc, "token-1")
	latest.Store("revoked") // every request now refuses token-1
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := client.Do(context.Background(), messages.APIRequest{Method: http.MethodGet, Path: []string{"apiops", "x"}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Do: %v", err)
		}
	}
	if n := ts.count(); n != 2 {
		t.Errorf("%d token requests, want 2: the first and one after the refusals", n)
	}
}
