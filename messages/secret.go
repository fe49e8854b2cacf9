package messages

import (
	"fmt"
	"io"
	"reflect"
)

// Redacted is what a Secret prints as, everywhere.
const Redacted = "[REDACTED]"

// Secret holds a password or a keystore file. It prints as "[REDACTED]" through every
// fmt verb, encoding/json, encoding.TextMarshaler (and so zap's reflected and text
// encoders); only Reveal returns the value, and only the APIOps request body calls it.
//
// The value sits behind a pointer: where fmt gives up on methods (a verb that does not
// fit a nested value), it prints a nested pointer as an address, never what it points to.
//
// A secret that arrived sealed keeps its sealed form: a command encodes it sealed, and
// its value is known once the worker has opened it.
type Secret struct {
	value  *string
	sealed *Sealed
}

// NewSecret wraps a value so that it cannot be printed by accident.
func NewSecret(value string) Secret { return Secret{value: &value} }

// NewSealedSecret is a secret known only in its sealed form.
func NewSealedSecret(s Sealed) Secret { return Secret{sealed: &s} }

// Reveal returns the secret's value ("" for one still sealed). Call it only to build
// the request to APIOps.
func (s Secret) Reveal() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// Sealed returns the sealed form the secret arrived in, if it did.
func (s Secret) Sealed() (Sealed, bool) {
	if s.sealed == nil {
		return Sealed{}, false
	}
	return *s.sealed, true
}

// IsZero reports whether the secret is empty: its value, once known, is empty; a
// sealed value not yet opened counts as set.
func (s Secret) IsZero() bool {
	if s.value != nil {
		return *s.value == ""
	}
	return s.sealed == nil
}

func (s Secret) String() string               { return Redacted }
func (s Secret) GoString() string             { return Redacted }
func (s Secret) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, Redacted) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// UnmarshalJSON accepts a JSON string, or a sealed value (an object), as strictly as
// Decode does.
func (s *Secret) UnmarshalJSON(data []byte) error {
	if err := decodeValue(data, reflect.ValueOf(s).Elem(), "secret"); err != nil {
		return err
	}
	return nil
}
