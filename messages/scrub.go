package messages

import (
	"encoding/base64"
	"reflect"
	"strings"
)

// minScrubbed is the shortest secret scrubbed wherever it occurs: a shorter one would
// take ordinary words with it, and guards nothing.
const minScrubbed = 4

// minScrubbedPrefix is the shortest start of a secret scrubbed on its own: a server
// that quotes a file or a password may cut it short.
const minScrubbedPrefix = 16

// A Scrubber removes known secret values from text that someone who saw them wrote:
// APIOps's error texts and codes, which may quote the request they refuse. Each secret
// goes as it is, in standard base64, and as any start of either form of at least 16
// characters. The zero Scrubber scrubs nothing.
type Scrubber struct {
	forms []string
}

// NewScrubber scrubs the given secrets.
func NewScrubber(secrets ...string) *Scrubber {
	s := &Scrubber{}
	for _, secret := range secrets {
		if len(secret) < minScrubbed {
			continue
		}
		s.forms = append(s.forms, secret, base64.StdEncoding.EncodeToString([]byte(secret)))
	}
	return s
}

// Scrubber scrubs the command's opened secrets (its passwords and keystore files, as
// the request to APIOps carries them).
func (c *Command) Scrubber() *Scrubber {
	var secrets []string
	collectSecrets(reflect.ValueOf(c.Params), &secrets)
	return NewScrubber(secrets...)
}

func collectSecrets(v reflect.Value, out *[]string) {
	if !v.IsValid() {
		return
	}
	if v.Type() == secretType {
		if s := v.Interface().(Secret); s.value != nil {
			*out = append(*out, *s.value)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			collectSecrets(v.Elem(), out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				collectSecrets(v.Field(i), out)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			collectSecrets(v.Index(i), out)
		}
	}
}

// Scrub returns text with every secret, and every long enough start of one, replaced
// by "[REDACTED]".
func (s *Scrubber) Scrub(text string) string {
	if s == nil {
		return text
	}
	for _, form := range s.forms {
		text = strings.ReplaceAll(text, form, Redacted)
		if len(form) < minScrubbedPrefix {
			continue
		}
		head := form[:minScrubbedPrefix]
		for from := 0; ; {
			i := strings.Index(text[from:], head)
			if i < 0 {
				break
			}
			start, end := from+i, from+i+minScrubbedPrefix
			for end < len(text) && end-start < len(form) && text[end] == form[end-start] {
				end++
			}
			text = text[:start] + Redacted + text[end:]
			from = start + len(Redacted)
		}
	}
	return text
}
