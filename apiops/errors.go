package apiops

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Kind says what an error means for the command that caused it.
type Kind int

const (
	// Permanent: APIOps refused the request (400, 403, 404, 409, 422, …, or a 2xx that
	// says FAILURE), or answered in no shape the worker recognises; sending it again
	// will not help, or could repeat a change that happened.
	Permanent Kind = iota
	// Transient: the network, a timeout, 408, 429 or 5xx; the same request may succeed
	// later.
	Transient
	// Unauthorized: 401; the token is bad, not the command.
	Unauthorized
)

func (k Kind) String() string {
	switch k {
	case Transient:
		return "transient"
	case Unauthorized:
		return "unauthorized"
	default:
		return "permanent"
	}
}

// Error is a failed APIOps call. It never holds the token or the request body.
type Error struct {
	// Op is the method and escaped path, e.g. "PUT /apiops/projects/P/keystores/k/".
	Op string
	// StatusCode is the HTTP status, or 0 when no response arrived.
	StatusCode int
	// Code is APIOps's "error" when it reads as a code; Description is its text, from
	// "resultMessage" or "error_description" (see readError), or the worker's own
	// description of an answer it does not recognise.
	Code        string
	Description string
	// RetryAfter is the Retry-After header, or a body's "retry_after", or 0.
	RetryAfter time.Duration
	Kind       Kind
	// Err is the transport error when no response arrived.
	Err error
}

func (e *Error) Error() string {
	switch {
	case e.StatusCode == 0:
		return fmt.Sprintf("%s: %v", e.Op, e.Err)
	case e.Code != "" || e.Description != "":
		return fmt.Sprintf("%s: HTTP %d %s: %s", e.Op, e.StatusCode, e.Code, e.Description)
	case e.Err != nil:
		return fmt.Sprintf("%s: HTTP %d %s: %v", e.Op, e.StatusCode, http.StatusText(e.StatusCode), e.Err)
	default:
		return fmt.Sprintf("%s: HTTP %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	}
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the same request may succeed later.
func (e *Error) Retryable() bool { return e.Kind == Transient }

// ResultCode is the result's error code: APIOps's own code, or http_<status> when it
// gave none, or "network_error" when no response arrived.
func (e *Error) ResultCode() string {
	switch {
	case e.Code != "":
		return e.Code
	case e.StatusCode != 0:
		return "http_" + strconv.Itoa(e.StatusCode)
	default:
		return "network_error"
	}
}

// Message is the result's error message: Description verbatim when there is one.
func (e *Error) Message() string {
	if e.Description != "" {
		return e.Description
	}
	return e.Error()
}

// KindOf classifies any error from Client.Do; errors that are not *Error (a canceled
// context, say) count as Transient.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Transient
}

// IsRetryable reports whether err is worth retrying with the same request.
func IsRetryable(err error) bool { return err != nil && KindOf(err) == Transient }

// IsUnauthorized reports whether APIOps refused the token.
func IsUnauthorized(err error) bool { return err != nil && KindOf(err) == Unauthorized }

func kindOfStatus(status int) Kind {
	switch {
	case status == http.StatusUnauthorized:
		return Unauthorized
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return Transient
	default:
		return Permanent
	}
}

// parseRetryAfter reads delay-seconds or an HTTP date; anything else counts as absent.
func parseRetryAfter(value string, now time.Time) time.Duration {
	if value == "" {
		return 0
	}
	if secs, err := strconv.Atoi(value); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(value); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
