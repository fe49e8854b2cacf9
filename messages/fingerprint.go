package messages

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A Fingerprint is what an idempotency record keeps of a command's params, so that an
// id published again with other params can be told apart and refused: for each value
// the params hold, by its field path (e.g. "params.keyStoreEnvironmentList[0].file"),
// a short digest. Values are never kept, and secrets are digested with a key only the
// workers hold (see FingerprintParams), never hashed plainly: a guessable password
// must not be testable by whoever reads the record.
//
// Absent fields and zero values leave no entry, so that `"deploy": false` and no
// "deploy" at all are the same params.
type Fingerprint map[string]string

// secretPrefix marks a secret's digest, which compares only under the same key.
const secretPrefix = "s:"

// digestLength is the bytes of a digest kept: 96 bits, so that two different values
// are told apart with certainty in practice, and a plan's fingerprint stays small.
const digestLength = 12

// Fingerprint fingerprints the command's params as Decode made them, sealed secrets
// opened; a plan's are its steps and onFailure commands, each whole. digestSecret
// digests a secret's value with the workers' key; nil leaves secrets out.
func (c *Command) Fingerprint(digestSecret func(value []byte) []byte) Fingerprint {
	fp := Fingerprint{}
	if plan, ok := c.Params.(*Plan); ok {
		fingerprintValue(reflect.ValueOf(plan.Steps), "steps", fp, digestSecret)
		fingerprintValue(reflect.ValueOf(plan.OnFailure), "onFailure", fp, digestSecret)
		fingerprintValue(reflect.ValueOf(plan.OnFailureFrom), "onFailureFrom", fp, digestSecret)
		fingerprintValue(reflect.ValueOf(plan.PartialSucceeds), "partialSucceeds", fp, digestSecret)
		return fp
	}
	fingerprintValue(reflect.ValueOf(c.Params), "params", fp, digestSecret)
	return fp
}

var timeType = reflect.TypeFor[time.Time]()

func fingerprintValue(v reflect.Value, path string, fp Fingerprint, digestSecret func([]byte) []byte) {
	switch v.Kind() {
	case reflect.Invalid:
		return
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			fingerprintValue(v.Elem(), path, fp, digestSecret)
		}
		return
	}
	switch v.Type() {
	case secretType:
		s := v.Interface().(Secret)
		if digestSecret != nil && !s.IsZero() {
			fp[path] = secretPrefix + encodeDigest(digestSecret([]byte(s.Reveal())))
		}
		return
	case timeType:
		if t := v.Interface().(time.Time); !t.IsZero() {
			fp[path] = plainDigest(t.UTC().Format(time.RFC3339Nano))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			field := v.Type().Field(i)
			name, _, _ := strings.Cut(field.Tag.Get("json"), ",")
			if !field.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = field.Name
			}
			fingerprintValue(v.Field(i), path+"."+name, fp, digestSecret)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			fingerprintValue(v.Index(i), path+"["+strconv.Itoa(i)+"]", fp, digestSecret)
		}
	case reflect.Map:
		for _, key := range v.MapKeys() {
			fingerprintValue(v.MapIndex(key), path+"."+key.String(), fp, digestSecret)
		}
	default:
		if !v.IsZero() {
			value, _ := json.Marshal(v.Interface())
			fp[path] = plainDigest(string(value))
		}
	}
}

func plainDigest(value string) string {
	sum := sha256.Sum256([]byte(value))
	return encodeDigest(sum[:])
}

func encodeDigest(sum []byte) string {
	return base64.RawURLEncoding.EncodeToString(sum[:min(len(sum), digestLength)])
}

// Differences lists, sorted, the field paths whose values differ between f and other,
// a path present in one only included. Secrets compare only when secretsComparable
// (both digested with the same key); otherwise their paths are left out.
func (f Fingerprint) Differences(other Fingerprint, secretsComparable bool) []string {
	var paths []string
	differs := func(path, a, b string) {
		if !secretsComparable && (strings.HasPrefix(a, secretPrefix) || strings.HasPrefix(b, secretPrefix)) {
			return
		}
		if a != b {
			paths = append(paths, path)
		}
	}
	for path, digest := range f {
		differs(path, digest, other[path])
	}
	for path, digest := range other {
		if _, both := f[path]; !both {
			differs(path, "", digest)
		}
	}
	slices.Sort(paths)
	return paths
}
