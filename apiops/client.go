// Package apiops is a client for the Apinizer management API (APIOps) endpoints that
// the worker drives. Client.Do sends a messages.APIRequest and returns the decoded
// success body, or an *Error that says whether the command, the token or the moment
// was at fault.
package apiops

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
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

// Response is APIOps's success body.
type Response struct {
	StatusCode int
	Success    bool `json:"success"`
	// DeploymentResult is nil for endpoints that do not deploy (mTLS settings).
	DeploymentResult *messages.DeploymentResult `json:"deploymentResult"`
}

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
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.MaxIdleConns = cfg.maxConnsPerHost
		transport.MaxIdleConnsPerHost = cfg.maxConnsPerHost
		transport.TLSClientConfig = cfg.tls
		hc = &http.Client{Transport: transport}
	}
	// A redirect would replay a PUT as a GET, or carry the token elsewhere: report it.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawPath = ""
	return &Client{base: base, tokens: tokens, http: hc, timeout: cfg.timeout, userAgent: cfg.userAgent}, nil
}

// Do sends req. A 2xx answer returns its decoded body; anything else an *Error.
func (c *Client) Do(ctx context.Context, req messages.APIRequest) (*Response, error) {
	path, rawPath, err := escapePath(req.Path)
	op := req.Method + " " + rawPath
	if err != nil {
		return nil, &Error{Op: req.String(), Kind: Permanent, Err: err}
	}
	u := *c.base
	u.Path += path
	u.RawPath = c.base.EscapedPath() + rawPath
	u.RawQuery = req.Query.Encode()

	token, err := c.tokens.Token(ctx)
	if err != nil {
		return nil, &Error{Op: op, Kind: Unauthorized, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	httpReq, err := http.NewRequestWithContext(ctx, req.Method, u.String(), body)
	if err != nil {
		return nil, &Error{Op: op, Kind: Permanent, Err: err}
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
		httpReq.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(httpReq)
	if err != nil {
		return nil, &Error{Op: op, Kind: Transient, Err: transportError(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return nil, &Error{Op: op, StatusCode: resp.StatusCode, Kind: Transient, Err: fmt.Errorf("read response: %w", transportError(err))}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, responseError(op, resp, data)
	}
	out := &Response{StatusCode: resp.StatusCode}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, &Error{Op: op, StatusCode: resp.StatusCode, Kind: Permanent, Err: errors.New("success response is not APIOps's JSON")}
		}
	}
	return out, nil
}

func responseError(op string, resp *http.Response, data []byte) *Error {
	e := &Error{
		Op:         op,
		StatusCode: resp.StatusCode,
		Kind:       kindOfStatus(resp.StatusCode),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(data, &body) == nil && (body.Error != "" || body.Description != "") {
		e.Code, e.Description = body.Error, body.Description
		return e
	}
	// A proxy's page, not APIOps's answer: say what it was without quoting it.
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mediaType == "" {
		mediaType = "no content type"
	}
	e.Err = fmt.Errorf("non-JSON body (%s, %d bytes)", mediaType, len(data))
	return e
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
