package messages

import (
	"encoding/json"
	"fmt"
	"io"
)

// Redacted is what a Secret prints as, everywhere.
const Redacted = "[REDACTED]"

// Secret holds a password or a keystore file. It prints as "[REDACTED]" through every
// fmt verb, encoding/json, encoding.TextMarshaler (and so zap's reflected and text
// encoders); only Reveal returns the value, and only the APIOps request body calls it.
//
// The value sits behind a pointer: where fmt gives up on methods (a verb that does not
// fit a nested value), it prints a nested pointer as an address, never what it points to.
type Secret struct{ value *string }

// NewSecret wraps a value so that it cannot be printed by accident.
func NewSecret(value string) Secret { return Secret{value: &value} }

// Reveal returns the secret's value. Call it only to build the request to APIOps.
func (s Secret) Reveal() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

func (s Secret) String() string               { return Redacted }
func (s Secret) GoString() string             { return Redacted }
func (s Secret) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, Redacted) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// UnmarshalJSON accepts a JSON string.
func (s *Secret) UnmarshalJSON(data []byte) error {
	var value string
	if err := json.Unmarshal(data, &value); err != nil {
		return err
	}
	*s = NewSecret(value)
	return nil
}
