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
// must not be testable by whoever reads the record. A keystore file (apiops:"base64")
// is digested as the bytes it decodes to, so that the same file encoded another way
// (wrapped lines) is the same value.
//
// Only what the command does counts: its type and params, a plan's steps (each its
// type and params) and its onFailure, onFailureFrom and partialSucceeds; never
// correlationId, replyTo or notAfter.
//
// A value that is given counts, even when zero: `"enabled": false`, `"keyStoreName":
// ""` and `"supportedProtocolList": []` each differ from leaving the field out, which
// leaves the setting as it is. Only a field that cannot tell the two apart (not a
// pointer nor a list: `"alias": ""`) leaves no entry when zero.
//
// A fingerprint is bounded (maxFingerprintSize): a larger one is collapsed, each
// top-level field of the params into one digest, or, should that not do, each part
// of the command into one (see collapse). Comparison still detects any difference,
// naming the coarser path.
//
// A fingerprint names its version (versionKey); fingerprints of different versions
// are not compared (see Differences).
type Fingerprint map[string]string

// versionKey and levelKey are the fingerprint's own entries, which no field path can
// be: its version, and how far it was collapsed ("" not at all).
const (
	versionKey         = "#version"
	levelKey           = "#collapsed"
	fingerprintVersion = "2"
)

// Collapse levels: each top-level field of the params one entry, or each part of the
// command (its params; a plan's steps, onFailure, ...) one entry.
const (
	levelFull   = 0
	levelFields = 1
	levelWhole  = 2
)

var levelNames = [...]string{levelFull: "", levelFields: "fields", levelWhole: "whole"}

// maxFingerprintSize bounds a fingerprint's stored size (estimated as its paths plus a
// fixed size per entry, whatever the key, so that the same params collapse the same
// way with or without the secrets' key).
const maxFingerprintSize = 64 << 10

// entrySize is what an entry costs besides its path: the digest, quotes and separators.
const entrySize = 24

// secretPrefix marks a secret's digest, which compares only under the same key.
const secretPrefix = "s:"

// digestLength is the bytes of a digest kept: 96 bits, so that two different values
// are told apart with certainty in practice, and a plan's fingerprint stays small.
const digestLength = 12

// Fingerprint fingerprints the command's params as Decode made them, sealed secrets
// opened; a plan's are its steps' and onFailure commands' types and params. digestSecret
// digests a secret's value with the workers' key; nil leaves secrets out.
func (c *Command) Fingerprint(digestSecret func(value []byte) []byte) Fingerprint {
	b := &fingerprinter{fp: Fingerprint{}, digestSecret: digestSecret}
	if plan, ok := c.Params.(*Plan); ok {
		b.commands(plan.Steps, "steps")
		b.commands(plan.OnFailure, "onFailure")
		b.value(reflect.ValueOf(plan.OnFailureFrom), "onFailureFrom", false, false)
		b.value(reflect.ValueOf(plan.PartialSucceeds), "partialSucceeds", false, false)
	} else {
		b.value(reflect.ValueOf(c.Params), "params", false, false)
	}
	fp := b.fp
	fp[versionKey] = fingerprintVersion
	if b.size <= maxFingerprintSize {
		return fp
	}
	fields := fp.collapse(levelFields)
	if fields.size() <= maxFingerprintSize {
		return fields
	}
	return fields.collapse(levelWhole) // as fp.collapse(levelWhole), which goes through levelFields
}

// Coarsest is f collapsed as far as it goes: a few entries whatever the params, which
// still tell any other params apart. A record that cannot be stored with f keeps this.
func (f Fingerprint) Coarsest() Fingerprint {
	if f == nil || f[versionKey] != fingerprintVersion {
		return f
	}
	return f.collapse(levelWhole)
}

type fingerprinter struct {
	fp           Fingerprint
	digestSecret func([]byte) []byte
	size         int // estimated, see maxFingerprintSize
}

func (b *fingerprinter) add(path, digest string) {
	b.size += len(path) + entrySize
	if digest != "" {
		b.fp[path] = digest
	}
}

// commands fingerprints steps by their type and params only: a step copies its
// plan's correlationId and the like, which must not count.
func (b *fingerprinter) commands(cmds []*Command, path string) {
	if cmds == nil {
		return
	}
	b.add(path, plainDigest("["+strconv.Itoa(len(cmds))+"]"))
	for i, cmd := range cmds {
		p := path + "[" + strconv.Itoa(i) + "]"
		b.value(reflect.ValueOf(cmd.Type), p+".type", false, false)
		b.value(reflect.ValueOf(cmd.Params), p+".params", false, false)
	}
}

var timeType = reflect.TypeFor[time.Time]()

// value fingerprints v at path. given: v was given explicitly (through a pointer, or
// as an element of a list or map), so that its zero value counts. base64: v is a
// keystore file in base64.
func (b *fingerprinter) value(v reflect.Value, path string, given, base64Field bool) {
	switch v.Kind() {
	case reflect.Invalid:
		return
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return
		}
		if v.Elem().Kind() == reflect.Struct && v.Elem().Type() != secretType && v.Elem().Type() != timeType {
			b.add(path, plainDigest("{}"))
		}
		b.value(v.Elem(), path, true, base64Field)
		return
	}
	switch v.Type() {
	case secretType:
		s := v.Interface().(Secret)
		if !given && s.IsZero() {
			return
		}
		digest := ""
		if b.digestSecret != nil {
			value := []byte(s.Reveal())
			if base64Field {
				if decoded, err := base64.StdEncoding.DecodeString(s.Reveal()); err == nil {
					value = decoded
				}
			}
			digest = secretPrefix + encodeDigest(b.digestSecret(value))
		}
		b.add(path, digest) // counted without the key too: see maxFingerprintSize
		return
	case timeType:
		if t := v.Interface().(time.Time); given || !t.IsZero() {
			b.add(path, plainDigest(t.UTC().Format(time.RFC3339Nano)))
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
			isBase64 := slices.Contains(strings.Split(field.Tag.Get("apiops"), ","), "base64")
			b.value(v.Field(i), path+"."+name, false, isBase64)
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return
		}
		b.add(path, plainDigest("["+strconv.Itoa(v.Len())+"]"))
		for i := range v.Len() {
			b.value(v.Index(i), path+"["+strconv.Itoa(i)+"]", true, base64Field)
		}
	case reflect.Map:
		if v.IsNil() {
			return
		}
		b.add(path, plainDigest("{"+strconv.Itoa(v.Len())+"}"))
		for _, key := range v.MapKeys() {
			b.value(v.MapIndex(key), path+"."+key.String(), true, base64Field)
		}
	default:
		if given || !v.IsZero() {
			value, _ := json.Marshal(v.Interface())
			b.add(path, plainDigest(string(value)))
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

func (f Fingerprint) level() int {
	for level, name := range levelNames {
		if f[levelKey] == name {
			return level
		}
	}
	return levelWhole // a level unknown to this version: the coarsest it knows
}

// size is f's estimated stored size (see maxFingerprintSize).
func (f Fingerprint) size() int {
	n := 0
	for path := range f {
		n += len(path) + entrySize
	}
	return n
}

// group is the entry that path collapses into at level: at levelFields, the top-level
// field of the params that holds it ("params.list[3]" into "params.list",
// "steps[1].params.list[3]" into "steps[1].params.list"); at levelWhole, the part of
// the command ("params", "steps", "onFailure", ...).
func group(path string, level int) string {
	if level == levelWhole {
		if end := strings.IndexAny(path, ".["); end >= 0 {
			return path[:end]
		}
		return path
	}
	i := strings.Index(path, "params.")
	if i < 0 {
		return path
	}
	rest := path[i+len("params."):]
	if end := strings.IndexAny(rest, ".["); end >= 0 {
		return path[:len(path)-len(rest)+end]
	}
	return path
}

// collapse is f collapsed to level, each group one digest of its entries, marked a
// secret's when one of them is. Collapsing to levelWhole goes through levelFields, so
// that a fingerprint collapsed in two steps equals one collapsed at once.
func (f Fingerprint) collapse(level int) Fingerprint {
	from := f.level()
	if level <= from {
		return f
	}
	if level == levelWhole && from < levelFields {
		f = f.collapse(levelFields)
	}
	groups := map[string][]string{}
	for path, digest := range f {
		if path != versionKey && path != levelKey {
			g := group(path, level)
			groups[g] = append(groups[g], path+"="+digest)
		}
	}
	out := Fingerprint{versionKey: f[versionKey], levelKey: levelNames[level]}
	for g, entries := range groups {
		slices.Sort(entries)
		secret := slices.ContainsFunc(entries, func(e string) bool {
			_, digest, _ := strings.Cut(e, "=")
			return strings.HasPrefix(digest, secretPrefix)
		})
		digest := plainDigest(strings.Join(entries, "\n"))
		if secret {
			digest = secretPrefix + digest
		}
		out[g] = digest
	}
	return out
}

// Differences lists, sorted, the field paths whose values differ between f and other,
// a path present in one only included. Secrets compare only when secretsComparable
// (both digested with the same key); otherwise their paths are left out. When one
// is collapsed further than the other, both are compared as the coarser is.
//
// Fingerprints of different versions (one made before zero values counted, with no
// version) are not compared: none differs, and the record is honoured as it was.
func (f Fingerprint) Differences(other Fingerprint, secretsComparable bool) []string {
	if f[versionKey] != other[versionKey] {
		return nil
	}
	if f[versionKey] != "" {
		level := max(f.level(), other.level())
		f, other = f.collapse(level), other.collapse(level)
	}
	var paths []string
	differs := func(path, a, b string) {
		if path == versionKey || path == levelKey {
			return
		}
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
