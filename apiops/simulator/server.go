// Package simulator is an in-memory, stateful stand-in for the parts of
// Apinizer's management API (APIOps) that the worker drives: credential secret
// assignments, keystores, keys, certificates, API proxy mTLS settings with
// their revisions, deployments and route health, and client-credential tokens.
//
// It answers like APIOps (paths, error bodies, deployment results) so that the
// worker can be tested, demonstrated and benchmarked without an Apinizer, and it
// injects the failures a real deployment sees (errors, resets, outages, partial
// deployments) on demand. APIOps's documentation shows its answers in several
// forms; SetDialect picks the one the simulator speaks. Serve it with
// httptest.NewServer(New(seed)).
package simulator

import (
	"cmp"
	"context"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxBodyBytes bounds what one request may send, so that a runaway client
// cannot make the simulator hold unbounded memory.
const maxBodyBytes = 32 << 20

// Server is a simulated APIOps. It is safe for concurrent use; one mutex guards
// all of its state, which is cheap enough for thousands of requests per second.
type Server struct {
	mux *http.ServeMux
	// rollbacks routes the one endpoint whose pattern conflicts with mux's.
	rollbacks *http.ServeMux

	mu        sync.Mutex
	faults    Faults
	failNext  int // authorised requests still to fail with nextFault
	nextFault fault
	downUntil time.Time
	recording bool
	requests  []*Request
	projects  map[string]*project
	dialect   Dialect
	// now is time.Now, except in tests that let tokens expire without waiting.
	now func() time.Time
	// keystoresCreated counts every keystore ever created, so that one created
	// again under a deleted one's name gets a new id.
	keystoresCreated uint64

	// token is the seed's static token; clients may ask for more.
	token   string
	clients map[string]string
	// tokenLifetime is given to tokens issued from now on; 0 means they never expire.
	tokenLifetime time.Duration
	tokensIssued  int
	// key signs issued tokens and seals keystore contents in answers; it is
	// random, so neither can be forged or read back from outside.
	key [32]byte
}

// Request is one request as the simulator received it, for tests to assert on
// what a client actually sent.
type Request struct {
	Method string
	// Path is r.URL.EscapedPath(), so tests can check how names were escaped.
	Path     string
	RawQuery string
	// Body is what was sent; nil for a token request, whose body is a client secret.
	Body []byte
	// Authorized tells whether the request carried a token the simulator
	// accepted: the seed's token or an unexpired issued one.
	Authorized bool
	// TraceParent is the request's W3C traceparent header, "" without one.
	TraceParent string
	// Status is what was answered: 0 when the connection was reset, or when the
	// client went away during injected latency and nothing was answered.
	Status int
}

// Faults are failures injected at random or by rule, to exercise a client's
// retries and error handling. The zero value injects nothing. A request that
// gets an injected error or reset is not executed, so state does not change.
type Faults struct {
	// Latency is added before answering every request, faulted or not.
	Latency time.Duration
	// ErrorRate is the fraction of requests answered with ErrorStatus.
	ErrorRate float64
	// ErrorStatus is the status of injected errors; 0 means 503.
	ErrorStatus int
	// RetryAfter is sent as a Retry-After header, in whole seconds rounded up,
	// on injected 429 and 503 answers, the statuses where it means "come back later".
	RetryAfter time.Duration
	// HTMLErrors gives injected errors an HTML body, as a reverse proxy's error
	// page would, to check that clients do not insist on JSON.
	HTMLErrors bool
	// ResetRate is the fraction of requests whose connection is reset without
	// any response.
	ResetRate float64
	// FailEnvironments are environments whose deployments fail. The change is
	// still saved, and the answer is 200 with deploymentResult.success false.
	FailEnvironments []string
}

// fault is an injected error answer.
type fault struct {
	status     int
	retryAfter time.Duration
	html       bool
}

// project is a seeded project's mutable state.
type project struct {
	id           string
	environments []string
	credentials  map[string]*CredentialState
	keystores    map[string]*keystore
	keys         map[string]*KeyState
	certificates map[string]*certificate
	proxies      map[string]*proxy
	// content makes the content of the seeded keystores and certificates.
	content seedContent
}

// keystore is a keystore with the id APIOps gave it, which the public
// KeystoreState leaves out so that tests comparing states need not know it.
type keystore struct {
	id string
	KeystoreState
	// seeded names the seed's keystore whose generated content this one is
	// still to get (see project.keystoreContent); "" once it has its content,
	// or when it was created through the API.
	seeded string
	// lacksKey caches keystoreLacksKey's answer for Environments (opening a file
	// takes about a millisecond); nil until asked, and again when they change.
	lacksKey *string
}

// KeystoreState is a keystore as the simulator holds it. Create and update keep
// the decoded files and the passwords so tests can check what arrived; a
// keystore from the seed holds a generated PKCS12 file for every environment
// of its project, made when it is first read (see Seed).
type KeystoreState struct {
	Name         string
	Description  string
	Environments []KeystoreEnvironment
}

// KeystoreEnvironment is a keystore's content for one environment.
type KeystoreEnvironment struct {
	EnvironmentName string
	File            []byte
	Password        string
	Alias           string
	KeyStoreType    string
}

// New returns a simulator holding a copy of seed, speaking the seed dialect,
// with recording on, no faults and tokens issued for DefaultTokenLifetime. Its
// handler answers every path, including unknown ones, as APIOps would.
func New(seed Seed) *Server {
	s := &Server{
		mux:           http.NewServeMux(),
		rollbacks:     http.NewServeMux(),
		dialect:       DialectSeed,
		token:         seed.Token,
		clients:       maps.Clone(seed.Clients),
		tokenLifetime: DefaultTokenLifetime,
		now:           time.Now,
		recording:     true,
		projects:      make(map[string]*project, len(seed.Projects)),
	}
	_, _ = cryptorand.Read(s.key[:])
	created := s.now()
	// In name order, so that a seed gives its keystores the same ids every time.
	for _, name := range slices.Sorted(maps.Keys(seed.Projects)) {
		s.projects[name] = s.newProject(name, seed.Projects[name], created)
	}
	s.routes()
	return s
}

func (s *Server) newProject(name string, ps ProjectSeed, created time.Time) *project {
	p := &project{
		id:           objectID("project", name),
		environments: slices.Clone(ps.Environments),
		credentials:  make(map[string]*CredentialState, len(ps.Credentials)),
		keystores:    make(map[string]*keystore, len(ps.Keystores)),
		keys:         make(map[string]*KeyState, len(ps.Keys)),
		certificates: make(map[string]*certificate, len(ps.Certificates)),
		proxies:      make(map[string]*proxy, len(ps.APIProxies)),
		content: seedContent{
			created:       created,
			expiresInDays: maps.Clone(ps.ExpiresInDays),
			passwords:     maps.Clone(ps.KeystorePasswords),
		},
	}
	for username, c := range ps.Credentials {
		p.credentials[username] = &c
	}
	for _, ks := range ps.Keystores {
		k := s.newKeystore(name, KeystoreState{Name: ks})
		k.seeded = ks
		p.keystores[ks] = k
	}
	for keyName, keyType := range ps.Keys {
		p.keys[keyName] = &KeyState{Name: keyName, KeyType: keyType}
	}
	for _, c := range ps.Certificates {
		p.certificates[c] = &certificate{CertificateState: CertificateState{Name: c}, seeded: c}
	}
	for proxyName, m := range ps.APIProxies {
		m.SupportedProtocolList = slices.Clone(m.SupportedProtocolList)
		// A seed can only name keystores, their ids being made here.
		if ks, ok := p.keystores[m.KeyStoreName]; ok && m.KeyStoreID == "" {
			m.KeyStoreID = ks.id
		}
		if ks, ok := p.keystores[m.TrustStoreName]; ok && m.TrustStoreID == "" {
			m.TrustStoreID = ks.id
		}
		p.proxies[proxyName] = newProxy(m, p.environments)
	}
	return p
}

// newKeystore gives a keystore its id: 24 hex digits, as APIOps's MongoDB ids
// have. The caller holds s.mu, or is New.
func (s *Server) newKeystore(projectName string, state KeystoreState) *keystore {
	s.keystoresCreated++
	return &keystore{
		id:            objectID("keystore", projectName, state.Name, strconv.FormatUint(s.keystoresCreated, 10)),
		KeystoreState: state,
	}
}

// objectID derives a 24-hex-digit id from parts, so that ids are stable for
// the same history and never need to be stored twice.
func objectID(parts ...string) string {
	h := sha256.New()
	for _, part := range parts {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// SetDialect switches the form of the answers from the next request on. An
// unknown dialect is a programming error and panics.
func (s *Server) SetDialect(d Dialect) {
	if !slices.Contains(dialects, d) {
		panic(fmt.Sprintf("simulator: SetDialect(%q): want one of %s", d, DialectNames()))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dialect = d
}

// SetToken replaces the seed's static token, to test a client's token
// rotation; tokens issued by the token endpoint stay valid.
func (s *Server) SetToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// SetFaults replaces the injected faults; FailNext and Down are independent of it.
func (s *Server) SetFaults(f Faults) {
	f.FailEnvironments = slices.Clone(f.FailEnvironments)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// FailNext makes the next n authorised requests answer status (0 means 503),
// with Retry-After as for Faults.RetryAfter. Unauthorised requests and token
// requests do not count, so a test can rely on exactly which calls fail. n <= 0
// cancels.
func (s *Server) FailNext(n int, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = max(n, 0)
	s.nextFault = fault{status: cmp.Or(status, http.StatusServiceUnavailable), retryAfter: retryAfter}
}

// Down simulates an outage: every request's connection is reset without a
// response until d has passed. Down(0) ends it.
func (s *Server) Down(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		s.downUntil = time.Time{}
		return
	}
	s.downUntil = s.now().Add(d)
}

// SetRecording switches request recording; benchmarks turn it off so memory
// stays flat.
func (s *Server) SetRecording(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recording = on
}

// Requests returns a copy of the recorded requests in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = *r
		out[i].Body = slices.Clone(r.Body)
	}
	return out
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// Credential reports what is assigned to a credential.
func (s *Server) Credential(projectName, username string) (CredentialState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectName]
	if !ok {
		return CredentialState{}, false
	}
	c, ok := p.credentials[username]
	if !ok {
		return CredentialState{}, false
	}
	return *c, true
}

// Keystore reports a keystore as created or last updated.
func (s *Server) Keystore(projectName, name string) (KeystoreState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectName]
	if !ok {
		return KeystoreState{}, false
	}
	ks, ok := p.keystores[name]
	if !ok {
		return KeystoreState{}, false
	}
	p.keystoreContent(ks)
	out := ks.KeystoreState
	out.Environments = slices.Clone(ks.Environments)
	return out, true
}

// KeystorePassword reports the password of a keystore's files: for a keystore
// from the seed, the seed's keystorePasswords entry or "changeit"; for one
// created through the API, the password of its first environment. It is false
// when there is no such keystore or it has no files.
func (s *Server) KeystorePassword(projectName, name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectName]
	if !ok {
		return "", false
	}
	ks, ok := p.keystores[name]
	switch {
	case !ok:
		return "", false
	case ks.seeded != "":
		return p.content.password(ks.seeded), true
	case len(ks.Environments) == 0:
		return "", false
	}
	return ks.Environments[0].Password, true
}

// KeystoreID reports the id of a keystore of the project, which the docs
// dialect's mTLS PATCH takes.
func (s *Server) KeystoreID(projectName, name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectName]
	if !ok {
		return "", false
	}
	ks, ok := p.keystores[name]
	if !ok {
		return "", false
	}
	return ks.id, true
}

// Proxy reports an API proxy's saved mTLS settings, which need not be the
// ones deployed (see Deployed).
func (s *Server) Proxy(projectName, name string) (MTLSSettings, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectName]
	if !ok {
		return MTLSSettings{}, false
	}
	px, ok := p.proxies[name]
	if !ok {
		return MTLSSettings{}, false
	}
	return px.settings.clone(), true
}

// admission is what ServeHTTP decided about a request before executing it.
type admission struct {
	rec     *Request // nil when recording is off
	latency time.Duration
	// dialect is read once, so that one request is answered in one dialect.
	dialect Dialect
	refused authFailure // 0: the token was accepted
	// open marks the token endpoint, which needs no token.
	open  bool
	reset bool
	fault fault // status 0: no injected error
}

// ServeHTTP answers one request. Checks run in this order: an outage (Down)
// resets; FailNext fails an authorised request; ResetRate resets; ErrorRate
// fails; a missing, wrong or expired token gets 401 (except at the token
// endpoint); then the request is routed and executed. Faults therefore hit
// unauthorised requests too, as a proxy in front of APIOps would, except
// FailNext, which is meant to count a client's calls and so leaves token
// requests alone as well.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, readErr := readBody(w, r)
	a := s.admit(r, body)
	if !wait(r.Context(), a.latency) {
		return
	}
	switch {
	case a.reset:
		resetConnection(w)
	case a.fault.status != 0:
		s.setStatus(a.rec, a.fault.status)
		a.fault.write(w)
	case a.refused != 0 && !a.open:
		s.fail(w, a.rec, a.dialect, unauthorized(a.refused))
	case readErr != nil:
		s.fail(w, a.rec, a.dialect, unreadable(readErr))
	default:
		mux := s.mux
		if _, pattern := s.rollbacks.Handler(r); pattern != "" {
			mux = s.rollbacks
		}
		mux.ServeHTTP(&exchange{s: s, w: w, r: r, rec: a.rec, body: body, dialect: a.dialect}, r)
	}
}

// readBody reads the whole body, nil when there is none; credential calls have
// none, and skipping the read keeps them free of a buffer allocation.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength == 0 {
		return nil, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
}

// unreadable describes a body that could not be read: too large, or cut off.
func unreadable(err error) *apiError {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "payload_too_large", routing: true,
			text: fmt.Sprintf("Request body exceeds %d MiB", maxBodyBytes>>20)}
	}
	return &apiError{status: http.StatusBadRequest, code: "bad_request", routing: true,
		text: "Could not read the request body: " + err.Error()}
}

// admit records the request and decides which fault, if any, it gets.
func (s *Server) admit(r *http.Request, body []byte) admission {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	a := admission{
		latency: s.faults.Latency,
		dialect: s.dialect,
		refused: s.authenticate(r.Header.Get("Authorization"), now),
		open:    r.URL.Path == tokenPath,
	}
	authorized := a.refused == 0
	if s.recording {
		recorded := body
		if a.open {
			recorded = nil // a token request's body is a client secret
		}
		a.rec = &Request{
			Method:      r.Method,
			Path:        r.URL.EscapedPath(),
			RawQuery:    r.URL.RawQuery,
			Body:        recorded,
			Authorized:  authorized,
			TraceParent: r.Header.Get("Traceparent"),
		}
		s.requests = append(s.requests, a.rec)
	}
	switch {
	case now.Before(s.downUntil):
		a.reset = true
	case authorized && !a.open && s.failNext > 0:
		s.failNext--
		a.fault = s.nextFault
		a.fault.html = s.faults.HTMLErrors
	case rand.Float64() < s.faults.ResetRate:
		a.reset = true
	case rand.Float64() < s.faults.ErrorRate:
		a.fault = fault{
			status:     cmp.Or(s.faults.ErrorStatus, http.StatusServiceUnavailable),
			retryAfter: s.faults.RetryAfter,
			html:       s.faults.HTMLErrors,
		}
	}
	return a
}

// authenticate checks an Authorization header against the seed's token and the
// tokens the simulator issued, returning 0 when it accepts it. The caller holds s.mu.
func (s *Server) authenticate(header string, now time.Time) authFailure {
	const scheme = "Bearer "
	switch {
	case header == "":
		return authMissing
	case len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme):
		return authInvalid
	}
	token := header[len(scheme):]
	if s.token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.token)) == 1 {
		return 0
	}
	return s.verifyIssued(token, now)
}

// wait sleeps for d, reporting false if the client went away first.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// resetConnection drops the connection without a response. Lingering off makes
// the close a TCP reset, the way a crashed server or a dropping proxy looks.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 connections cannot be hijacked; aborting resets the stream instead.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func (f fault) write(w http.ResponseWriter) {
	if f.retryAfter > 0 && (f.status == http.StatusTooManyRequests || f.status == http.StatusServiceUnavailable) {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.retryAfter.Seconds()))))
	}
	text := http.StatusText(f.status)
	if f.html {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(f.status)
		fmt.Fprintf(w, "<html>\r\n<head><title>%[1]d %[2]s</title></head>\r\n<body>\r\n<center><h1>%[1]d %[2]s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n", f.status, text)
		return
	}
	writeJSON(w, f.status, errorBody{errorCode(text), "Simulated fault: " + text})
}

// errorCode turns a status text into an error code: "Service Unavailable"
// becomes "service_unavailable".
func errorCode(statusText string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r == ' ' || r == '-':
			return '_'
		}
		return -1
	}, statusText)
}

// fail answers an error in the dialect.
func (s *Server) fail(w http.ResponseWriter, rec *Request, d Dialect, e *apiError) {
	status, body := d.failure(e)
	s.respond(w, rec, status, body)
}

// respond records status before writing, so a client that has its answer sees
// it in Requests.
func (s *Server) respond(w http.ResponseWriter, rec *Request, status int, v any) {
	s.setStatus(rec, status)
	writeJSON(w, status, v)
}

func (s *Server) setStatus(rec *Request, status int) {
	if rec == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Status = status
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only the simulator's own types are encoded here.
		panic(fmt.Sprintf("simulator: encode response: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// exchange is the ResponseWriter the mux is given. Endpoints answer through w
// directly; anything written through exchange itself comes from the mux (its
// plain-text 404 and 405, or a redirect to a cleaned or slash-terminated path),
// which APIOps answers with a JSON error instead.
type exchange struct {
	s       *Server
	w       http.ResponseWriter
	r       *http.Request
	rec     *Request
	body    []byte
	dialect Dialect
}

func (x *exchange) Header() http.Header { return x.w.Header() }

func (x *exchange) Write(p []byte) (int, error) { return len(p), nil }

func (x *exchange) WriteHeader(status int) {
	h := x.w.Header()
	allow := h.Get("Allow")
	clear(h)
	// The mux also offers 405 for a path missing its trailing slash, which
	// APIOps does not know at all; only the token endpoint has none.
	if status == http.StatusMethodNotAllowed && (strings.HasSuffix(x.r.URL.Path, "/") || x.r.URL.Path == tokenPath) {
		h.Set("Allow", allow)
		x.s.fail(x.w, x.rec, x.dialect, &apiError{status: status, code: "method_not_allowed", routing: true,
			text: fmt.Sprintf("Method %s is not allowed; use %s", x.r.Method, allow)})
		return
	}
	x.s.fail(x.w, x.rec, x.dialect, noEndpoint(x.r))
}

// noEndpoint is the 404 for a path and method APIOps does not serve.
func noEndpoint(r *http.Request) *apiError {
	return &apiError{status: http.StatusNotFound, code: "not_found", routing: true,
		text: fmt.Sprintf("No endpoint for %s %s", r.Method, r.URL.EscapedPath())}
}
