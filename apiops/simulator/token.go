package simulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// tokenPath is the OAuth2 client-credentials endpoint (auth.mdx), the one path
// that needs no token.
const tokenPath = "/apiops/auth/token"

// DefaultTokenLifetime is how long issued tokens live until SetTokenLifetime
// says otherwise; auth.mdx's example answers "expires_in": 3600.
const DefaultTokenLifetime = time.Hour

// issuedPrefix starts every issued token, so that a static token is never
// mistaken for one.
const issuedPrefix = "sim."

// SetTokenLifetime sets the lifetime of tokens issued from now on; tokens
// already issued keep theirs. 0 means they never expire, and their answer has no
// expires_in. A negative lifetime is a programming error and panics.
func (s *Server) SetTokenLifetime(d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("simulator: SetTokenLifetime(%v): must not be negative", d))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenLifetime = d
}

// TokensIssued reports how many tokens the token endpoint has issued, so a test
// can count a client's refreshes.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokensIssued
}

func oauthError(status int, code, text string) *apiError {
	return &apiError{status: status, code: code, text: text, oauth: true}
}

func (s *Server) issueToken(req request) (outcome, *apiError) {
	mediaType, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if mediaType != "application/x-www-form-urlencoded" {
		return outcome{}, oauthError(http.StatusBadRequest, "invalid_request",
			"Content-Type must be application/x-www-form-urlencoded")
	}
	form, err := url.ParseQuery(string(req.body))
	if err != nil {
		return outcome{}, oauthError(http.StatusBadRequest, "invalid_request", "Invalid form body: "+err.Error())
	}
	if form.Get("grant_type") != "client_credentials" {
		return outcome{}, oauthError(http.StatusBadRequest, "unsupported_grant_type",
			"GrantType value must be client_credentials!")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	secret, known := s.clients[form.Get("client_id")]
	// An empty secret would otherwise let anyone in with an empty one.
	if !known || secret == "" || subtle.ConstantTimeCompare([]byte(form.Get("client_secret")), []byte(secret)) != 1 {
		return outcome{}, oauthError(http.StatusUnauthorized, "unauthorized_client", "Bad credentials")
	}
	return outcome{action: tokenGrant, grant: s.issue(s.now())}, nil
}

// issue makes a token that carries its serial number and expiry and is signed
// with the server's key, as a JWT is, so checking it needs no record of it and
// a client refreshing every second cannot grow the simulator's memory. The
// caller holds s.mu.
func (s *Server) issue(now time.Time) grant {
	s.tokensIssued++
	var expiry int64 // never
	if s.tokenLifetime > 0 {
		expiry = now.Add(s.tokenLifetime).UnixNano()
	}
	payload := strconv.Itoa(s.tokensIssued) + "." + strconv.FormatInt(expiry, 10)
	return grant{token: issuedPrefix + payload + "." + s.mac("token", []byte(payload)), lifetime: s.tokenLifetime}
}

// verifyIssued checks a token the simulator may have issued. The caller holds s.mu.
func (s *Server) verifyIssued(token string, now time.Time) authFailure {
	rest, ok := strings.CutPrefix(token, issuedPrefix)
	if !ok {
		return authInvalid
	}
	cut := strings.LastIndexByte(rest, '.')
	if cut < 0 || !hmac.Equal([]byte(rest[cut+1:]), []byte(s.mac("token", []byte(rest[:cut])))) {
		return authInvalid
	}
	_, exp, _ := strings.Cut(rest[:cut], ".")
	expiry, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return authInvalid
	}
	if expiry != 0 && now.UnixNano() >= expiry {
		return authExpired
	}
	return 0
}

// mac authenticates data under the server's key, in a form that fits a token.
func (s *Server) mac(purpose string, data []byte) string {
	return base64.RawURLEncoding.EncodeToString(s.sum(purpose, data))
}

// seal stands in for a value APIOps stores encrypted: base64 text that reveals
// nothing of data, and is the same for the same data, so answers can be compared.
func (s *Server) seal(purpose string, data []byte) string {
	return base64.StdEncoding.EncodeToString(s.sum(purpose, data))
}

// sum is the HMAC of data under the server's key; purpose keeps a token's MAC
// from ever serving as a sealed keystore value, or the other way round.
func (s *Server) sum(purpose string, data []byte) []byte {
	m := hmac.New(sha256.New, s.key[:])
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}
