// Package apiops is a client for the Apinizer management API (APIOps) endpoints that
// the worker drives. Client.Do sends a messages.APIRequest and returns the decoded
// success body, or an *Error that says whether the command, the token or the moment
// was at fault.
package apiops

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Client calls APIOps. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	tokens    TokenSource
	http      *http.Client
	timeout   time.Duration
	userAgent string
}

// Defaults for New.
const (
	DefaultTimeout         = 30 * time.Second
	DefaultMaxConnsPerHost = 256
	maxResponseBody        = 1 << 20
)

type config struct {
	timeout         time.Duration
	tls             *tls.Config
	maxConnsPerHost int
	httpClient      *http.Client
	userAgent       string
}

// Option configures a Client.
type Option func(*config) error

// WithUserAgent sets the User-Agent of every request, so that APIOps's access log
// tells which instance called.
func WithUserAgent(ua string) Option {
	return func(c *config) error {
		c.userAgent = ua
		return nil
	}
}

// WithTimeout bounds each request, including reading its response.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be positive, not %v", d)
		}
		c.timeout = d
		return nil
	}
}

// WithCAFile trusts the PEM certificates in path, instead of the system roots, for
// APIOps's server certificate.
func WithCAFile(path string) Option {
	return func(c *config) error {
		pem, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read APIOps CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("APIOps CA file %s holds no PEM certificate", path)
		}
		c.tlsConfig().RootCAs = pool
		return nil
	}
}

// WithClientCertificate presents a client certificate, for APIOps behind mTLS.
func WithClientCertificate(certFile, keyFile string) Option {
	return func(c *config) error {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("load APIOps client certificate: %w", err)
		}
		c.tlsConfig().Certificates = []tls.Certificate{cert}
		return nil
	}
}

// WithMaxConnsPerHost sets how many connections to APIOps are kept open, and idle.
// Set it to at least the number of concurrent requests: Go's default keeps only 2
// idle connections per host, so every further request would open a new one.
func WithMaxConnsPerHost(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("max connections per host must be positive, not %d", n)
		}
		c.maxConnsPerHost = n
		return nil
	}
}

// WithHTTPClient uses hc as it is; TLS and connection options are then ignored.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error { c.httpClient = hc; return nil }
}

// transport is the HTTP transport of APIOps requests, token requests included.
func (c *config) transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = guardedDial((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	t.MaxIdleConns = c.maxConnsPerHost
	t.MaxIdleConnsPerHost = c.maxConnsPerHost
	t.TLSClientConfig = c.tls
	return t
}

func (c *config) tlsConfig() *tls.Config {
	if c.tls == nil {
		c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return c.tls
}

// New returns a client for the APIOps at baseURL (e.g. https://apinizer.example.com).
func New(baseURL string, tokens TokenSource, opts ...Option) (*Client, error) {
	base, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("APIOps URL: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("APIOps URL %q must be http:// or https:// with a host", baseURL)
	}
	if tokens == nil {
		return nil, errors.New("APIOps token source is nil")
	}
	cfg := config{timeout: DefaultTimeout, maxConnsPerHost: DefaultMaxConnsPerHost}
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	hc := cfg.httpClient
	if hc == nil {
		hc = &http.Client{Transport: cfg.transport()}
	}
	// A redirect would replay a PUT as a GET, or carry the token elsewhere: report it.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawPath = ""
	return &Client{base: base, tokens: tokens, http: hc, timeout: cfg.timeout, userAgent: cfg.userAgent}, nil
}

// Do sends req. It returns a *Response only when APIOps answered 2xx and said it saved
// the change (see readSuccess); anything else is an *Error that says whether the
// command, the token or the moment was at fault. When APIOps refuses the token, the
// token source is refreshed (if it can be) and the request sent once more.
//
// For each of req.KeystoreIDs the keystore is looked up first and its id added to the
// body (see keystoreID). Nothing is cached: an id read earlier could belong to a
// keystore deleted since, whose name a new one now has.
func (c *Client) Do(ctx context.Context, req messages.APIRequest) (*Response, error) {
	body := req.Body
	for _, lookup := range req.KeystoreIDs {
		id, err := c.keystoreID(ctx, lookup)
		if err != nil {
			return nil, err
		}
		if id == "" && lookup.Name != "" {
			continue // APIOps shows no ids: the name alone it is
		}
		if body, err = withMember(body, lookup.Field, id); err != nil {
			return nil, &Error{Op: req.String(), Kind: Permanent, Err: err}
		}
	}
	req.Body = body
	a, err := c.exchange(ctx, req)
	if err != nil {
		return nil, err
	}
	if !a.ok() {
		return nil, a.refused()
	}
	resp, err := readSuccess(a.op, a.resp, a.data)
	if err != nil {
		return nil, a.scrubbed(err.(*Error))
	}
	return resp, nil
}

// keystoreID reads the id of the keystore lookup names from GET .../keystores/{name}/,
// "" when the answer carries none (as list-keystores.mdx shows it): the request then
// names the keystore alone. A keystore APIOps does not know is APIOps's own error. The
// empty name, which clears the setting, has the empty id.
func (c *Client) keystoreID(ctx context.Context, lookup messages.KeystoreIDLookup) (string, error) {
	if lookup.Name == "" {
		return "", nil
	}
	a, err := c.exchange(ctx, messages.APIRequest{Method: http.MethodGet, Path: []string{"apiops", "projects", lookup.Project, "keystores", lookup.Name}})
	if err != nil {
		return "", err
	}
	if !a.ok() {
		return "", a.refused()
	}
	resp, data, op := a.resp, a.data, a.op
	unrecognised := &Error{Op: op, StatusCode: resp.StatusCode, Kind: Permanent, Code: CodeUnrecognisedResponse,
		Description: fmt.Sprintf("APIOps answered %d to the keystore lookup with a body the worker does not recognise (%s)", resp.StatusCode, describeBody(resp, data))}
	body, ok := object(data)
	saved, known := verdict(body)
	entries, isList := array(body["resultList"])
	switch {
	case !ok || !known || !isList || saved && !HasMember(body, "resultList"):
		return "", unrecognised
	case !saved:
		message, _ := Member[string](body, "resultMessage")
		return "", a.scrubbed(&Error{Op: op, StatusCode: resp.StatusCode, Kind: Permanent, Description: cmp.Or(message, "APIOps answered that the keystore lookup failed")})
	}
	for _, entry := range entries {
		keystore, isObject := object(entry)
		id, hasID := Member[string](keystore, "id")
		if !isObject || HasMember(keystore, "id") && !hasID {
			return "", unrecognised
		}
		if name, _ := Member[string](keystore, "name"); name == lookup.Name || len(entries) == 1 && name == "" {
			return id, nil
		}
	}
	return "", &Error{Op: op, StatusCode: resp.StatusCode, Kind: Permanent,
		Description: fmt.Sprintf("Keystore (name: %s) is not found in project %s", lookup.Name, lookup.Project)}
}

// withMember returns a copy of the JSON object body with the string member name added.
func withMember(body []byte, name, value string) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if _, ok := object(trimmed); !ok {
		return nil, fmt.Errorf("cannot add %s: the request body is not a JSON object", name)
	}
	out := append(bytes.Clone(trimmed[:len(trimmed)-1]), ',')
	if bytes.Equal(bytes.TrimSpace(out), []byte("{,")) {
		out = out[:len(out)-1]
	}
	out = appendJSONString(out, name)
	out = append(out, ':')
	out = appendJSONString(out, value)
	return append(out, '}'), nil
}

func appendJSONString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s) // cannot fail for a string
	return append(buf, b...)
}

// answer is APIOps's answer to one request, with what reading it needs of the request.
type answer struct {
	resp  *http.Response
	data  []byte
	op    string
	token string // the request's, which no error may quote
}

func (a *answer) ok() bool { return a.resp.StatusCode >= 200 && a.resp.StatusCode <= 299 }

// refused reads a non-2xx answer.
func (a *answer) refused() *Error { return a.scrubbed(readError(a.op, a.resp, a.data, time.Now())) }

// scrubbed takes the token out of what APIOps wrote into e: a server may quote the
// request it refuses.
func (a *answer) scrubbed(e *Error) *Error {
	s := messages.NewScrubber(a.token)
	e.Code, e.Description = s.Scrub(e.Code), s.Scrub(e.Description)
	return e
}

// exchange sends one request and reads its answer, at most maxResponseBody of it. A 401
// makes the token source refresh, when it can, and the request go once more.
func (c *Client) exchange(ctx context.Context, req messages.APIRequest) (*answer, error) {
	path, rawPath, err := escapePath(req.Path)
	op := req.Method + " " + rawPath
	if err != nil {
		return nil, &Error{Op: req.Method + " " + strings.Join(req.Path, "/"), Kind: Permanent, Err: err}
	}
	u := *c.base
	u.Path += path
	u.RawPath = c.base.EscapedPath() + rawPath
	u.RawQuery = req.Query.Encode()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	for refreshed := false; ; refreshed = true {
		token, err := c.tokens.Token(ctx)
		if err != nil {
			var tokenErr *Error
			if errors.As(err, &tokenErr) {
				return nil, tokenErr
			}
			return nil, &Error{Op: op, Kind: Unauthorized, Err: err}
		}
		if err := checkSend(ctx); err != nil {
			return nil, &Error{Op: op, Kind: Transient, Err: err}
		}
		resp, data, err := c.roundTrip(ctx, req, u.String(), token)
		if err != nil {
			return nil, &Error{Op: op, StatusCode: statusOf(resp), Kind: Transient, Err: err}
		}
		refresher, canRefresh := c.tokens.(Refresher)
		if resp.StatusCode != http.StatusUnauthorized || refreshed || !canRefresh {
			return &answer{resp: resp, data: data, op: op, token: token}, nil
		}
		refresher.Refresh(token)
	}
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// roundTrip sends the request and reads the whole answer; resp is non-nil with an
// error when the answer could not be read to its end.
func (c *Client) roundTrip(ctx context.Context, req messages.APIRequest, target, token string) (*http.Response, []byte, error) {
	var reader io.Reader
	if req.Body != nil {
		reader = bytes.NewReader(req.Body)
	}
	httpReq, err := http.NewRequestWithContext(ctx, req.Method, target, reader)
	if err != nil {
		return nil, nil, err
	}
	httpReq.Header.Set("Authorization", "Bearer "+token)
	httpReq.Header.Set("Accept", "application/json")
	if trace.SpanContextFromContext(ctx).IsValid() { // W3C Trace Context, as the worker's spans
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(httpReq.Header))
	}
	if c.userAgent != "" {
		httpReq.Header.Set("User-Agent", c.userAgent)
	}
	if req.Body != nil {
		httpReq.Header.Set("Content-Type", cmp.Or(req.ContentType, "application/json"))
	}
	resp, err := c.http.Do(httpReq)
	if err != nil {
		return nil, nil, transportError(err)
	}
	defer resp.Body.Close()
	// One byte more than is read, so that an answer cut short is not taken for whole.
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return resp, nil, fmt.Errorf("read response: %w", transportError(err))
	}
	return resp, data, nil
}

// transportError drops *url.Error's wrapping: it repeats the method and URL that Op
// already names.
func transportError(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout() {
		return fmt.Errorf("timed out: %w", err)
	}
	return err
}

// escapePath percent-escapes each segment as one path segment and adds the trailing
// slash that every APIOps path has. url.PathEscape leaves "." and ".." alone, and a
// server would resolve them, so those are refused, as are empty segments.
func escapePath(segments []string) (path, rawPath string, err error) {
	var p, raw strings.Builder
	for _, seg := range segments {
		if seg == "" || seg == "." || seg == ".." {
			return "", "", fmt.Errorf("path segment %q is not a name", seg)
		}
		p.WriteString("/" + seg)
		raw.WriteString("/" + url.PathEscape(seg))
	}
	p.WriteString("/")
	raw.WriteString("/")
	return p.String(), raw.String(), nil
}
