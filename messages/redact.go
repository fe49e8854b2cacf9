package messages

import (
	"bytes"
	"encoding/json"
	"strings"
)

// isSecretField reports whether a JSON key names a secret, wherever it appears and
// however it is capitalised (such keys are refused as unknown, but their dead letter
// must not keep them).
func isSecretField(key string) bool {
	return strings.EqualFold(key, "password") || strings.EqualFold(key, "file") || strings.EqualFold(key, "content")
}

var redactedJSON = []byte(`"` + Redacted + `"`)

// RedactSecrets returns a copy of a command's body with the value of every "password",
// "file" and "content" (a key's) key replaced by "[REDACTED]", everything else byte for byte as it was, and
// whether anything was replaced. Sealed values are safe at rest and are kept. A body that is not valid JSON cannot be redacted
// reliably: if it may hold a secret, all of it is replaced.
func RedactSecrets(body []byte) ([]byte, bool) {
	if !json.Valid(body) {
		return redactInvalid(body)
	}
	type span struct{ start, end int64 }
	var spans []span
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct{ object, keyNext bool }
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				stack = append(stack, frame{object: d == '{', keyNext: d == '{'})
				continue
			}
			stack = stack[:len(stack)-1]
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].keyNext = true
			}
			continue
		}
		n := len(stack)
		if n == 0 || !stack[n-1].object {
			continue
		}
		if !stack[n-1].keyNext { // a scalar value; a key follows
			stack[n-1].keyNext = true
			continue
		}
		if key, _ := tok.(string); isSecretField(key) {
			start := dec.InputOffset()
			var value json.RawMessage
			if dec.Decode(&value) != nil {
				return redactInvalid(body)
			}
			if !bytes.Equal(value, redactedJSON) && !isSealedValue(value) {
				spans = append(spans, span{start, dec.InputOffset()})
			}
			continue // the value is consumed; a key follows
		}
		stack[n-1].keyNext = false
	}
	if len(spans) == 0 {
		return body, false
	}
	out := make([]byte, 0, len(body))
	prev := int64(0)
	for _, s := range spans {
		// The span starts right after the key: keep the colon and spaces before the value.
		valueStart := s.start + int64(bytes.IndexFunc(body[s.start:s.end], func(r rune) bool {
			return r != ':' && r != ' ' && r != '\t' && r != '\n' && r != '\r'
		}))
		out = append(out, body[prev:valueStart]...)
		out = append(out, redactedJSON...)
		prev = s.end
	}
	return append(out, body[prev:]...), true
}

// invalidJSONRedacted replaces a body that is not JSON and may hold a secret.
var invalidJSONRedacted = []byte(`"[REDACTED: not valid JSON, and it may hold a secret]"`)

func redactInvalid(body []byte) ([]byte, bool) {
	lower := bytes.ToLower(body)
	if bytes.Contains(lower, []byte("password")) || bytes.Contains(lower, []byte("file")) || bytes.Contains(body, []byte(`\u`)) {
		return invalidJSONRedacted, true
	}
	return body, false
}

// isSealedValue reports whether a secret's JSON value is a well-formed sealed value.
func isSealedValue(value []byte) bool {
	if len(value) == 0 || value[0] != '{' {
		return false
	}
	_, err := decodeSealed(value, "")
	return err == nil
}
