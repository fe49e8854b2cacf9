package apiops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ClientCredentials gets APIOps tokens with OAuth2 client credentials (POST
// /apiops/auth/token, the client id and secret in the form body) and caches them. A
// token that came with expires_in is fetched again a quarter of its lifetime before it
// runs out, at most 30 s before; one without is kept until Refresh. Concurrent Token
// calls share one fetch. Every error is an *Error: Transient when the token endpoint
// did not answer or answered 408, 429 or 5xx, Unauthorized otherwise (the credentials
// or the setup are wrong, not the command). Errors never hold the response body, the
// secret or a token.
type ClientCredentials struct {
	tokenURL string
	clientID string
	secret   func() (string, error)
	http     *http.Client
	timeout  time.Duration
	op       string
	now      func() time.Time
	joined   func() // tests: called when a Token call waits for a fetch

	mu     sync.Mutex
	cached issuedToken
	flight *tokenFlight
}

// issuedToken is a token and when to fetch the next one; without expiry it is kept
// until Refresh.
type issuedToken struct {
	token                string
	expires              bool
	refreshAt, expiresAt time.Time
}

type tokenFlight struct {
	done  chan struct{}
	token string
	err   error
}

// maxRefreshEarly bounds how long before its expiry a token is fetched again.
const maxRefreshEarly = 30 * time.Second

// NewClientCredentials returns the token source for clientID at tokenURL (e.g.
// https://apinizer.example.com/apiops/auth/token). secret is called before each token
// request (see SecretFile, SecretValue). opts are the Options of the APIOps Client, so
// that token requests get the same TLS settings, timeout and User-Agent; the
// connection limit and WithHTTPClient apply too, though WithHTTPClient's client is
// not modified. Redirects are not followed: they could carry the secret elsewhere.
// Nothing is requested until Token.
func NewClientCredentials(tokenURL, clientID string, secret func() (string, error), opts ...Option) (*ClientCredentials, error) {
	u, err := url.Parse(tokenURL)
	if err != nil {
		var urlErr *url.Error // it quotes the URL, which may hold a password
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, fmt.Errorf("APIOps token URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("APIOps token URL %q must be http:// or https:// with a host", u.Redacted())
	}
	if clientID == "" {
		return nil, errors.New("APIOps client id is empty")
	}
	if secret == nil {
		return nil, errors.New("APIOps client secret source is nil")
	}
	cfg := config{timeout: DefaultTimeout, maxConnsPerHost: DefaultMaxConnsPerHost}
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	var base http.RoundTripper = cfg.transport()
	if cfg.httpClient != nil {
		base = cfg.httpClient.Transport
	}
	if base == nil {
		base = http.DefaultTransport
	}
	hc := &http.Client{
		Transport:     &tokenTransport{base: base, userAgent: cfg.userAgent},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if cfg.httpClient != nil {
		hc.Timeout = cfg.httpClient.Timeout
	}
	return &ClientCredentials{
		tokenURL: u.String(),
		clientID: clientID,
		secret:   secret,
		http:     hc,
		timeout:  cfg.timeout,
		op:       http.MethodPost + " " + u.EscapedPath(),
		now:      time.Now,
	}, nil
}

// SecretFile returns a secret source that reads path at each call, so that a rotated
// Kubernetes Secret applies at the next token request. A trailing line break is
// dropped; an empty secret is an error.
func SecretFile(path string) func() (string, error) {
	return func() (string, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read APIOps client secret file: %w", err)
		}
		secret := strings.TrimRight(string(data), "\r\n")
		if secret == "" {
			return "", fmt.Errorf("APIOps client secret file %s is empty", path)
		}
		return secret, nil
	}
}

// SecretValue returns a secret source that always gives secret, e.g. from
// APIOPS_CLIENT_SECRET.
func SecretValue(secret string) func() (string, error) {
	return func() (string, error) {
		if secret == "" {
			return "", errors.New("APIOps client secret is empty")
		}
		return secret, nil
	}
}

// Token returns the cached token, or fetches one when there is none or it is about
// to expire; a call during a fetch waits for that fetch.
func (c *ClientCredentials) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	if t := c.cached; t.token != "" && (!t.expires || c.now().Before(t.refreshAt)) {
		c.mu.Unlock()
		return t.token, nil
	}
	f := c.flight
	if f == nil {
		f = &tokenFlight{done: make(chan struct{})}
		c.flight = f
		// Not bound to this caller: the others waiting for it, or the next caller,
		// still get its token when this one gives up.
		go c.fly(context.WithoutCancel(ctx), f)
	}
	c.mu.Unlock()
	if c.joined != nil {
		c.joined()
	}
	select {
	case <-f.done:
		if f.err != nil {
			// Fetched early and failed: the token in hand still works until it expires.
			c.mu.Lock()
			t := c.cached
			c.mu.Unlock()
			if t.token != "" && c.now().Before(t.expiresAt) {
				return t.token, nil
			}
		}
		return f.token, f.err
	case <-ctx.Done():
		return "", &Error{Op: c.op, Kind: Transient, Err: ctx.Err()}
	}
}

// Refresh makes the next Token fetch a new token, unless rejected is no longer the
// token in hand: a fetch since, or one under way, counts as the new one.
func (c *ClientCredentials) Refresh(rejected string) {
	c.mu.Lock()
	if c.cached.token == rejected {
		c.cached = issuedToken{}
	}
	c.mu.Unlock()
}

func (c *ClientCredentials) fly(ctx context.Context, f *tokenFlight) {
	t, err := c.fetch(ctx)
	c.mu.Lock()
	c.flight = nil
	if err == nil {
		c.cached = t
	}
	c.mu.Unlock()
	f.token, f.err = t.token, err
	close(f.done)
}

func (c *ClientCredentials) fetch(ctx context.Context) (issuedToken, error) {
	secret, err := c.secret()
	if err == nil && secret == "" {
		err = errors.New("APIOps client secret is empty")
	}
	if err != nil {
		// Nothing was sent (StatusCode 0), and waiting will not help.
		return issuedToken{}, &Error{Op: c.op, Kind: Unauthorized, Err: err}
	}
	conf := clientcredentials.Config{
		ClientID:     c.clientID,
		ClientSecret: secret,
		TokenURL:     c.tokenURL,
		AuthStyle:    oauth2.AuthStyleInParams,
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ex := &tokenExchange{}
	ctx = context.WithValue(ctx, tokenExchangeKey{}, ex)
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.http)
	requested := c.now() // expires_in counts from no earlier than this
	tok, err := conf.Token(ctx)
	if err != nil {
		return issuedToken{}, c.tokenError(err, ex, secret)
	}
	t := issuedToken{token: tok.AccessToken}
	if lifetime, ok := expiresIn(tok); ok {
		early := min(lifetime/4, maxRefreshEarly)
		t.expires, t.refreshAt, t.expiresAt = true, requested.Add(lifetime-early), requested.Add(lifetime)
	}
	return t, nil
}

// expiresIn reads expires_in, a number or (as some servers send it) a string of
// seconds; absent, zero or negative means the token does not expire.
func expiresIn(tok *oauth2.Token) (time.Duration, bool) {
	var secs float64
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		secs = v
	case int64:
		secs = float64(v)
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, false
		}
		secs = f
	default:
		return 0, false
	}
	if !(secs > 0) { // also NaN
		return 0, false
	}
	return time.Duration(min(secs, float64(1<<31)) * float64(time.Second)), true
}

// tokenError turns a failed token request into an *Error built from parsed fields
// only, with the secret scrubbed out of anything the server sent.
func (c *ClientCredentials) tokenError(err error, ex *tokenExchange, secret string) *Error {
	e := &Error{Op: c.op, StatusCode: ex.status}
	switch {
	case ex.status == 0: // no answer: the endpoint is down, not the credentials bad
		e.Kind, e.Err = Transient, transportError(err)
	case ex.readErr != nil:
		e.Kind, e.Err = Transient, fmt.Errorf("read token response: %w", transportError(ex.readErr))
	default:
		e = readError(c.op, &http.Response{StatusCode: ex.status, Header: ex.header}, ex.body, c.now())
		if _, isJSON := object(ex.body); isJSON && e.Code == "" && e.Description == "" {
			e.Err = errors.New("token response holds no access_token")
		}
		if e.Kind == Permanent {
			// A refused token request is never the command's fault: every command
			// would fail alike until the credentials or the token URL are fixed.
			e.Kind = Unauthorized
		}
	}
	scrub := secretScrubber(secret)
	e.Code, e.Description = scrub(e.Code), scrub(e.Description)
	if e.Err != nil {
		if msg := e.Err.Error(); scrub(msg) != msg {
			e.Err = errors.New(scrub(msg))
		}
	}
	return e
}

// secretScrubber returns a function that replaces the secret, as sent and as a server
// may echo it (percent- or HTML-escaped, in any case), by "[redacted]".
func secretScrubber(secret string) func(string) string {
	if secret == "" {
		return func(s string) string { return s }
	}
	forms := []string{secret, url.QueryEscape(secret), url.PathEscape(secret), html.EscapeString(secret)}
	// Longest first: the regexp takes the first alternative that matches.
	slices.SortFunc(forms, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	for i, f := range forms {
		forms[i] = regexp.QuoteMeta(f)
	}
	re := regexp.MustCompile("(?i)" + strings.Join(slices.Compact(forms), "|"))
	return func(s string) string { return re.ReplaceAllLiteralString(s, "[redacted]") }
}

// tokenExchange records what the token endpoint answered, for tokenError: oauth2's
// errors either lose the status or quote the body.
type tokenExchange struct {
	status  int
	header  http.Header
	body    []byte
	readErr error
}

type tokenExchangeKey struct{}

// tokenTransport sets the token request's headers and records its answer in the
// request context's tokenExchange.
type tokenTransport struct {
	base      http.RoundTripper
	userAgent string
}

func (t *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Accept", "application/json")
	if t.userAgent != "" {
		req.Header.Set("User-Agent", t.userAgent)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	ex, _ := req.Context().Value(tokenExchangeKey{}).(*tokenExchange)
	if ex == nil {
		return resp, nil
	}
	ex.status, ex.header = resp.StatusCode, resp.Header
	ex.body, ex.readErr = io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	if ex.readErr != nil {
		return nil, ex.readErr
	}
	resp.Body = io.NopCloser(bytes.NewReader(ex.body))
	return resp, nil
}
