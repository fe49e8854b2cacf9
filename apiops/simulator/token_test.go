package simulator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

const (
	tokenPath = "/apiops/auth/token"
	formType  = "application/x-www-form-urlencoded"
	goodForm  = "grant_type=client_credentials&client_id=pipeline&client_secret=pipeline-secret"
)

// postToken asks for a token; it must get an answer.
func postToken(t testing.TB, ts *httptest.Server, contentType, form string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", ts.URL+tokenPath, strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", tokenPath, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

// issued asks for a token with the seed's client, which must get one.
func issued(t testing.TB, ts *httptest.Server) string {
	t.Helper()
	res := postToken(t, ts, formType, goodForm)
	var got struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(res.body), &got); res.status != 200 || err != nil || got.AccessToken == "" {
		t.Fatalf("token: %d %s (%v)", res.status, res.body, err)
	}
	return got.AccessToken
}

// useToken makes an authorised call with token and returns its answer.
func useToken(t testing.TB, ts *httptest.Server, token string) response {
	t.Helper()
	res, err := send(t, ts, "Bearer "+token, "GET", keystores+"trust-2026/", "")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// clock is a settable time for the simulator, so that tokens expire without waiting.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestTokenIssued(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    simulator.Dialect
		want string
	}{
		{seedD, `{"access_token":"<token>","token_type":"Bearer","expires_in":3600}`},
		{docsD, `{"access_token":"<token>","token_type":"Bearer","expires_in":3600}`},
		{openapiD, `{"access_token":"<token>","expires_in":3600}`}, // TokenResponse has no token_type
		{mixedD, `{"access_token":"<token>","token_type":"Bearer","expires_in":3600}`},
	} {
		t.Run(string(tc.d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, tc.d)
			res := postToken(t, ts, formType+"; charset=UTF-8", goodForm)
			tok := issued(t, ts)
			if tok == token || strings.Contains(res.body, `"`+tok+`"`) {
				t.Fatalf("token %q is the seed's token or was issued twice", tok)
			}
			var got map[string]any
			_ = json.Unmarshal([]byte(res.body), &got)
			first, _ := got["access_token"].(string)
			res.body = strings.Replace(res.body, first, "<token>", 1)
			wantJSON(t, res, 200, tc.want)
			if n := sim.TokensIssued(); n != 2 {
				t.Errorf("TokensIssued = %d, want 2", n)
			}
			for _, tk := range []string{first, tok, token} {
				if res := useToken(t, ts, tk); res.status != 200 {
					t.Errorf("token %q: %d %s", tk, res.status, res.body)
				}
			}
			// Rotating the seed's token leaves issued ones alone.
			sim.SetToken("rotated")
			if res := useToken(t, ts, tok); res.status != 200 {
				t.Errorf("issued token after SetToken: %d %s", res.status, res.body)
			}
		})
	}
}

func TestTokenRefused(t *testing.T) {
	t.Parallel()
	oauth := func(code, text string) string { return `{"error":"` + code + `","error_description":"` + text + `"}` }
	badCredentials := map[simulator.Dialect]string{
		seedD:    oauth("unauthorized_client", "Bad credentials"),
		docsD:    `{"status":"FAILURE","resultMessage":"Bad credentials"}`, // as error-handling.mdx shows it
		openapiD: oauth("unauthorized_client", "Bad credentials"),
		mixedD:   oauth("unauthorized_client", "Bad credentials"),
	}
	for _, tc := range []struct {
		name, contentType, form string
		status                  int
		body                    string // "" for badCredentials
	}{
		{"wrong grant type", formType, "grant_type=password&client_id=pipeline&client_secret=pipeline-secret",
			400, oauth("unsupported_grant_type", "GrantType value must be client_credentials!")},
		{"grant type in other case", formType, "grant_type=CLIENT_CREDENTIALS&client_id=pipeline&client_secret=pipeline-secret",
			400, oauth("unsupported_grant_type", "GrantType value must be client_credentials!")},
		{"no grant type", formType, "client_id=pipeline&client_secret=pipeline-secret",
			400, oauth("unsupported_grant_type", "GrantType value must be client_credentials!")},
		{"JSON body", "application/json", `{"grant_type":"client_credentials","client_id":"pipeline","client_secret":"pipeline-secret"}`,
			400, oauth("invalid_request", "Content-Type must be application/x-www-form-urlencoded")},
		{"no content type", "", goodForm,
			400, oauth("invalid_request", "Content-Type must be application/x-www-form-urlencoded")},
		{"wrong secret", formType, "grant_type=client_credentials&client_id=pipeline&client_secret=pipeline", 401, ""},
		{"secret of another case", formType, "grant_type=client_credentials&client_id=pipeline&client_secret=PIPELINE-SECRET", 401, ""},
		{"unknown client", formType, "grant_type=client_credentials&client_id=deployer&client_secret=pipeline-secret", 401, ""},
		{"no client", formType, "grant_type=client_credentials", 401, ""},
	} {
		for _, d := range simulator.Dialects() {
			t.Run(tc.name+"/"+string(d), func(t *testing.T) {
				t.Parallel()
				sim, ts := startIn(t, d)
				want := tc.body
				if want == "" {
					want = badCredentials[d]
				}
				wantJSON(t, postToken(t, ts, tc.contentType, tc.form), tc.status, want)
				if n := sim.TokensIssued(); n != 0 {
					t.Errorf("TokensIssued = %d after a refusal", n)
				}
			})
		}
	}
	t.Run("empty secret in a seed", func(t *testing.T) {
		t.Parallel()
		_, ts := serve(t, simulator.Seed{Clients: map[string]string{"pipeline": ""}})
		if res := postToken(t, ts, formType, "grant_type=client_credentials&client_id=pipeline&client_secret="); res.status != 401 {
			t.Errorf("got %d %s, want 401", res.status, res.body)
		}
	})
	t.Run("other method", func(t *testing.T) {
		t.Parallel()
		_, ts := start(t)
		res := call(t, ts, "GET", tokenPath, "")
		wantError(t, res, 405, "method_not_allowed", "Method GET is not allowed; use POST")
		if got := res.header.Get("Allow"); got != "POST" {
			t.Errorf("Allow = %q", got)
		}
	})
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, d)
			c := &clock{now: time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)}
			sim.SetClock(c.Now)
			sim.SetTokenLifetime(10 * time.Minute)
			res := postToken(t, ts, formType, goodForm)
			if !strings.Contains(res.body, `"expires_in":600`) {
				t.Fatalf("token: %d %s, want expires_in 600", res.status, res.body)
			}
			var got struct {
				AccessToken string `json:"access_token"`
			}
			_ = json.Unmarshal([]byte(res.body), &got)
			tok := got.AccessToken

			c.Advance(10*time.Minute - time.Nanosecond)
			if res := useToken(t, ts, tok); res.status != 200 {
				t.Fatalf("just before expiry: %d %s", res.status, res.body)
			}
			c.Advance(time.Nanosecond)
			res = useToken(t, ts, tok)
			if d == seedD {
				wantError(t, res, 401, "unauthorized_client", "Invalid token")
			} else {
				wantJSON(t, res, 401, `{"status":"FAILURE","resultMessage":"Token was expired!"}`)
			}
			// A refresh works, and the seed's token never expires.
			if res := useToken(t, ts, issued(t, ts)); res.status != 200 {
				t.Errorf("refreshed token: %d %s", res.status, res.body)
			}
			if res := useToken(t, ts, token); res.status != 200 {
				t.Errorf("seed's token: %d %s", res.status, res.body)
			}
			if n := sim.TokensIssued(); n != 2 {
				t.Errorf("TokensIssued = %d, want 2", n)
			}

			// A token keeps the lifetime it was issued with.
			sim.SetTokenLifetime(0)
			forever := postToken(t, ts, formType, goodForm)
			if strings.Contains(forever.body, "expires_in") {
				t.Errorf("token that never expires: %s, want no expires_in", forever.body)
			}
			_ = json.Unmarshal([]byte(forever.body), &got)
			short := issuedWith(t, sim, ts, time.Minute)
			c.Advance(100 * 365 * 24 * time.Hour)
			if res := useToken(t, ts, got.AccessToken); res.status != 200 {
				t.Errorf("token without expiry after a century: %d %s", res.status, res.body)
			}
			if res := useToken(t, ts, short); res.status != 401 {
				t.Errorf("short token after a century: %d %s", res.status, res.body)
			}
		})
	}
}

func issuedWith(t *testing.T, sim *simulator.Server, ts *httptest.Server, lifetime time.Duration) string {
	t.Helper()
	sim.SetTokenLifetime(lifetime)
	return issued(t, ts)
}

// TestTokenExpiryRealClock checks the expiry against the real clock, with a
// lifetime so short that the token has expired by the time it is used.
func TestTokenExpiryRealClock(t *testing.T) {
	t.Parallel()
	sim, ts := startIn(t, docsD)
	sim.SetTokenLifetime(time.Nanosecond)
	res := postToken(t, ts, formType, goodForm)
	if !strings.Contains(res.body, `"expires_in":1`) {
		t.Errorf("token: %s, want expires_in rounded up to 1", res.body)
	}
	var got struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal([]byte(res.body), &got)
	wantJSON(t, useToken(t, ts, got.AccessToken), 401, `{"status":"FAILURE","resultMessage":"Token was expired!"}`)
}

func TestTokenForged(t *testing.T) {
	t.Parallel()
	sim, ts := startIn(t, docsD)
	tok := issued(t, ts)
	_, other := start(t)
	foreign := issued(t, other)
	// The expiry is readable in the token, but changing it breaks the signature.
	parts := strings.Split(tok, ".")
	parts[2] = "0"
	for _, bad := range []string{tok[:len(tok)-1], tok + "x", foreign, strings.Join(parts, "."), "sim.", "sim.1.0.", "Sim-token"} {
		wantJSON(t, useToken(t, ts, bad), 401, `{"status":"FAILURE","resultMessage":"Token is not valid!"}`)
	}
	if n := sim.TokensIssued(); n != 1 {
		t.Errorf("TokensIssued = %d, want 1", n)
	}
}

func TestTokenFaults(t *testing.T) {
	t.Parallel()
	t.Run("Down", func(t *testing.T) {
		t.Parallel()
		sim, ts := start(t)
		sim.Down(time.Hour)
		req, _ := http.NewRequestWithContext(t.Context(), "POST", ts.URL+tokenPath, strings.NewReader(goodForm))
		req.Header.Set("Content-Type", formType)
		if res, err := ts.Client().Do(req); err == nil {
			res.Body.Close()
			t.Fatalf("got %d while down, want a transport error", res.StatusCode)
		}
		if n := sim.TokensIssued(); n != 0 {
			t.Errorf("TokensIssued = %d while down", n)
		}
	})
	t.Run("ErrorRate", func(t *testing.T) {
		t.Parallel()
		sim, ts := start(t)
		sim.SetFaults(simulator.Faults{ErrorRate: 1, ErrorStatus: 500})
		wantError(t, postToken(t, ts, formType, goodForm), 500, "internal_server_error", "Simulated fault: Internal Server Error")
		if n := sim.TokensIssued(); n != 0 {
			t.Errorf("TokensIssued = %d after a fault", n)
		}
	})
	t.Run("ResetRate", func(t *testing.T) {
		t.Parallel()
		sim, ts := start(t)
		sim.SetFaults(simulator.Faults{ResetRate: 1})
		req, _ := http.NewRequestWithContext(t.Context(), "POST", ts.URL+tokenPath, strings.NewReader(goodForm))
		req.Header.Set("Content-Type", formType)
		if res, err := ts.Client().Do(req); err == nil {
			res.Body.Close()
			t.Fatalf("got %d, want a reset", res.StatusCode)
		}
	})
	t.Run("FailNext does not count token requests", func(t *testing.T) {
		t.Parallel()
		sim, ts := start(t)
		sim.FailNext(1, 503, 0)
		// Even one carrying a valid token, as a client refreshing early might send.
		req, _ := http.NewRequestWithContext(t.Context(), "POST", ts.URL+tokenPath, strings.NewReader(goodForm))
		req.Header.Set("Content-Type", formType)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			AccessToken string `json:"access_token"`
		}
		err = json.NewDecoder(res.Body).Decode(&got)
		res.Body.Close()
		if res.StatusCode != 200 || err != nil {
			t.Fatalf("token: %d (%v)", res.StatusCode, err)
		}
		tok := got.AccessToken
		if res := useToken(t, ts, tok); res.status != 503 {
			t.Errorf("first call after the token: %d, want the injected 503", res.status)
		}
		if res := useToken(t, ts, tok); res.status != 200 {
			t.Errorf("second call: %d %s", res.status, res.body)
		}
		reqs := sim.Requests()
		if len(reqs) != 3 || reqs[0].Path != tokenPath || reqs[0].Status != 200 || reqs[0].Body != nil || !reqs[0].Authorized { // the client secret is not kept
			t.Fatalf("recorded %+v", reqs)
		}
		if !reqs[1].Authorized || reqs[1].Status != 503 || !reqs[2].Authorized || reqs[2].Status != 200 {
			t.Errorf("recorded %+v", reqs[1:])
		}
	})
}
