package messages

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Sealed is a secret sealed for a worker's public curve key: the form a "password" or
// "file" takes instead of a JSON string (docs/contract.md, "Sealed secrets"). A string
// is always plaintext and an object always sealed.
type Sealed struct {
	// Box is the standard base64 of an nkeys xkv1 box ("xkv1", a 24-byte nonce, the
	// XSalsa20-Poly1305 ciphertext) of the JSON of a SealedContent.
	Box string `json:"sealed"`
	// For is the worker's public curve key the box was sealed for (X…).
	For string `json:"for"`
	// From is the sender's public curve key (X…), made for this value alone.
	From string `json:"from"`
}

// SealedContent is what a sealed value's box holds: the secret bound to its project
// and to its field's name, so that nobody can move a sealed value into another
// project's command or into another field and have the worker use it there.
type SealedContent struct {
	Project string `json:"project"`
	Field   string `json:"field"` // "password" or "file"
	Value   string `json:"value"`
}

// Opener opens sealed values; the worker's keyring is one. Its errors go into results
// and so name keys, never values.
type Opener interface {
	Open(Sealed) (SealedContent, error)
}

// DecodeOptions are what DecodeWith does with secrets besides decoding them.
type DecodeOptions struct {
	// Opener opens sealed values, which are then validated like plaintext ones. Without
	// one, sealed values are checked for form only and stay sealed.
	Opener Opener
	// RequireSealed rejects plaintext secrets.
	RequireSealed bool
}

// decodeSealed decodes a sealed value (an object) strictly and checks its form; errors
// name the part at path.
func decodeSealed(data []byte, path string) (Sealed, *Error) {
	var s Sealed
	if err := decodeObject(data, reflect.ValueOf(&s).Elem(), path); err != nil {
		return Sealed{}, err
	}
	if err := checkSealed(s, path); err != nil {
		return Sealed{}, err
	}
	return s, nil
}

// xkeyBoxMin is the shortest xkv1 box: version, nonce and Poly1305 tag.
const xkeyBoxMin = 4 + 24 + 16

// checkSealed returns what is wrong with the form of a sealed value, naming its field
// (the path of the secret, then "sealed", "for" or "from"), or nil.
func checkSealed(s Sealed, path string) *Error {
	for _, k := range []struct{ name, key string }{{"for", s.For}, {"from", s.From}} {
		if problem := checkPublicCurveKey(k.key); problem != "" {
			return invalid(joinPath(path, k.name), problem)
		}
	}
	box, err := base64.StdEncoding.Strict().DecodeString(s.Box)
	switch {
	case s.Box == "":
		return invalid(joinPath(path, "sealed"), "is required")
	case err != nil:
		return invalid(joinPath(path, "sealed"), "must be standard base64 (A-Z a-z 0-9 + /, padded with =)")
	case len(box) < xkeyBoxMin || string(box[:4]) != "xkv1":
		return invalid(joinPath(path, "sealed"), "is not an xkv1 box: too short, or another version")
	}
	return nil
}

// checkPublicCurveKey checks the form of an nkeys public curve key: 56 characters of
// base32 (A-Z, 2-7) starting with X. Its checksum is the opener's to check.
func checkPublicCurveKey(key string) string {
	if key == "" {
		return "is required"
	}
	if len(key) != 56 || key[0] != 'X' || strings.IndexFunc(key, func(r rune) bool {
		return (r < 'A' || r > 'Z') && (r < '2' || r > '7')
	}) >= 0 {
		return "must be a public curve key: 56 characters of A-Z and 2-7 starting with X"
	}
	return ""
}

// eachSecret calls fn for every Secret in v (params, or a part of them) with its path
// and the JSON name of the field it is in, until fn returns an error.
func eachSecret(v reflect.Value, path, name string, fn func(v reflect.Value, path, name string) error) error {
	switch {
	case v.Type() == secretType:
		return fn(v, path, name)
	case v.Kind() == reflect.Pointer:
		if !v.IsNil() {
			return eachSecret(v.Elem(), path, name, fn)
		}
	case v.Kind() == reflect.Slice:
		for i := range v.Len() {
			if err := eachSecret(v.Index(i), fmt.Sprintf("%s[%d]", path, i), name, fn); err != nil {
				return err
			}
		}
	case v.Kind() == reflect.Struct:
		info := structInfoFor(v.Type())
		for i := range info.fields {
			f := &info.fields[i]
			if err := eachSecret(v.Field(f.index), joinPath(path, f.name), f.name, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// openSecrets opens every sealed secret in params, checks what each was bound to (its
// project, and the name of the field it is in), and, with RequireSealed, rejects
// plaintext ones.
func openSecrets(params reflect.Value, path, project string, o DecodeOptions) *Error {
	err := eachSecret(params, path, "params", func(v reflect.Value, path, name string) error {
		if err := openSecret(v, path, name, project, o); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return err.(*Error)
	}
	return nil
}

func openSecret(v reflect.Value, path, field, project string, o DecodeOptions) *Error {
	s := v.Interface().(Secret)
	switch {
	case s.IsZero():
		return nil
	case s.sealed == nil:
		if o.RequireSealed {
			return invalid(path, "must be sealed: this worker accepts only sealed secrets (--require-sealed)")
		}
		return nil
	case o.Opener == nil:
		return nil
	}
	content, err := o.Opener.Open(*s.sealed)
	if err != nil {
		return invalid(path, "cannot be opened: "+err.Error())
	}
	switch {
	case content.Project != project:
		return invalid(path, fmt.Sprintf("was sealed for project %q, not for this command's", truncate(content.Project, 64)))
	case content.Field != field:
		return invalid(path, fmt.Sprintf("was sealed for a %q field, not for %q", truncate(content.Field, 32), field))
	}
	v.Set(reflect.ValueOf(Secret{value: &content.Value, sealed: s.sealed}))
	return nil
}

// SealSecrets replaces every plaintext secret in the command's params with the sealed
// value that seal makes of it; seal is given the content to put in the box.
func (c *Command) SealSecrets(seal func(SealedContent) (Sealed, error)) error {
	if p, ok := c.Plan(); ok { // the steps' secrets, bound to the plan's project
		for _, step := range slices.Concat(p.Steps, p.OnFailure) {
			v := reflect.ValueOf(step.Params)
			if v.Kind() != reflect.Pointer || v.IsNil() {
				return fmt.Errorf("seal secrets: a step's params must be a pointer to a command type's params, not %T", step.Params)
			}
			if err := sealSecrets(v.Elem(), c.Project, seal); err != nil {
				return err
			}
		}
		return nil
	}
	v := reflect.ValueOf(c.Params)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("seal secrets: params must be a pointer to a command type's params, not %T", c.Params)
	}
	return sealSecrets(v.Elem(), c.Project, seal)
}

func sealSecrets(params reflect.Value, project string, seal func(SealedContent) (Sealed, error)) error {
	return eachSecret(params, "params", "params", func(v reflect.Value, path, name string) error {
		s := v.Interface().(Secret)
		if s.sealed != nil || s.IsZero() {
			return nil
		}
		sealed, err := seal(SealedContent{Project: project, Field: name, Value: s.Reveal()})
		if err != nil {
			return fmt.Errorf("seal %s: %w", path, err)
		}
		v.Set(reflect.ValueOf(NewSealedSecret(sealed)))
		return nil
	})
}
