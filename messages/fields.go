package messages

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// MaxNameLength is the longest name (project, username, keystore, key, proxy) accepted.
const MaxNameLength = 255

// fieldInfo is what the struct tags of one field say; see CommandType.
type fieldInfo struct {
	index                         int // in the struct
	order                         int // in structInfo.fields
	name                          string
	required                      bool
	path, query, base64, resource bool
	file                          bool // a multipart request's file part
	enum                          []string
	maxLength, minItems           int
	// keystoreIDField is the body member that takes the id of the keystore this field
	// names ("" when it names none): apiops:"keystore-id=<member>".
	keystoreIDField string
}

type structInfo struct {
	fields   []fieldInfo
	byName   map[string]*fieldInfo
	resource int // index into fields of the apiops:"resource" field, or -1
}

var structInfos sync.Map // reflect.Type -> *structInfo

func structInfoFor(t reflect.Type) *structInfo {
	if v, ok := structInfos.Load(t); ok {
		return v.(*structInfo)
	}
	info := &structInfo{byName: make(map[string]*fieldInfo), resource: -1}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		f := fieldInfo{index: i, name: name, required: !strings.Contains(opts, "omitempty")}
		for opt := range strings.SplitSeq(sf.Tag.Get("apiops"), ",") {
			if member, ok := strings.CutPrefix(opt, "keystore-id="); ok {
				f.keystoreIDField = member
				continue
			}
			switch opt {
			case "path":
				f.path = true
			case "query":
				f.query = true
			case "base64":
				f.base64 = true
			case "resource":
				f.resource = true
			case "file":
				f.file = true
			}
		}
		for kv := range strings.SplitSeq(sf.Tag.Get("jsonschema"), ",") {
			key, val, _ := strings.Cut(kv, "=")
			switch key {
			case "enum":
				f.enum = append(f.enum, val)
			case "maxLength":
				f.maxLength, _ = strconv.Atoi(val)
			case "minItems":
				f.minItems, _ = strconv.Atoi(val)
			}
		}
		if f.resource {
			info.resource = len(info.fields)
		}
		f.order = len(info.fields)
		if f.order == 64 {
			panic("messages: more than 64 fields in " + t.String()) // decodeObject's bit set
		}
		info.fields = append(info.fields, f)
	}
	for i := range info.fields {
		info.byName[info.fields[i].name] = &info.fields[i]
	}
	v, _ := structInfos.LoadOrStore(t, info)
	return v.(*structInfo)
}

var (
	secretType     = reflect.TypeFor[Secret]()
	rawMessageType = reflect.TypeFor[json.RawMessage]()
)

// isEmpty is reflect's IsZero, but an empty Secret counts as empty too.
func isEmpty(v reflect.Value) bool {
	if v.Type() == secretType {
		return v.Interface().(Secret).IsZero()
	}
	return v.IsZero()
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func isNull(data []byte) bool { return bytes.Equal(bytes.TrimSpace(data), []byte("null")) }

// decodeValue decodes data into v strictly: unknown and repeated object keys are errors,
// and every error names the field's path. JSON null counts as absent. data must
// already be valid JSON.
func decodeValue(data json.RawMessage, v reflect.Value, path string) *Error {
	if isNull(data) {
		return nil
	}
	switch t := v.Type(); {
	case t == rawMessageType:
		v.SetBytes(bytes.Clone(data))
		return nil
	case t == secretType:
		if data[0] == '{' {
			sealed, err := decodeSealed(data, path)
			if err != nil {
				return err
			}
			v.Set(reflect.ValueOf(NewSealedSecret(sealed)))
			return nil
		}
		s, ok := unquote(data)
		if !ok {
			return invalid(path, "must be a string, or a sealed value (an object)")
		}
		v.Set(reflect.ValueOf(NewSecret(s)))
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		if err := decodeValue(data, elem.Elem(), path); err != nil {
			return err
		}
		v.Set(elem)
	case reflect.Struct:
		return decodeObject(data, v, path)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 0, 4)
		isArray, err := walk(data, '[', func(_, item []byte) *Error {
			i := s.Len()
			s = reflect.Append(s, reflect.Zero(v.Type().Elem()))
			return decodeValue(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		})
		if !isArray {
			return invalid(path, "must be an array")
		}
		if err != nil {
			return err
		}
		v.Set(s)
	case reflect.String:
		s, ok := unquote(data)
		if !ok {
			return invalid(path, "must be a string")
		}
		v.SetString(s)
	case reflect.Bool:
		switch string(data) {
		case "true", "false":
			v.SetBool(data[0] == 't')
		default:
			return invalid(path, "must be true or false")
		}
	case reflect.Int:
		n, err := strconv.ParseInt(string(data), 10, 0)
		if err != nil {
			return invalid(path, "must be a whole number")
		}
		v.SetInt(n)
	default:
		panic("messages: cannot decode into " + v.Type().String())
	}
	return nil
}

func decodeObject(data json.RawMessage, v reflect.Value, path string) *Error {
	info := structInfoFor(v.Type())
	var seen uint64
	isObject, err := walk(data, '{', func(lit, raw []byte) *Error {
		f, key := info.field(lit)
		fieldPath := joinPath(path, key)
		if f == nil {
			return invalid(fieldPath, "is not a known field")
		}
		bit := uint64(1) << f.order
		if seen&bit != 0 {
			return invalid(fieldPath, "appears more than once")
		}
		seen |= bit
		return decodeValue(raw, v.Field(f.index), fieldPath)
	})
	if !isObject {
		return invalid(path, "must be an object")
	}
	return err
}

// field finds the field that the JSON string literal lit names, and returns the key.
func (info *structInfo) field(lit []byte) (*fieldInfo, string) {
	if inner := lit[1 : len(lit)-1]; bytes.IndexByte(inner, '\\') < 0 {
		if f := info.byName[string(inner)]; f != nil { // no copy of the key
			return f, f.name
		}
	}
	key, _ := unquote(lit)
	return info.byName[key], key
}

// validateStruct applies the tag rules to every field of v (a struct) and then the
// struct's own cross-field rules.
func validateStruct(v reflect.Value, path string) *Error {
	info := structInfoFor(v.Type())
	for i := range info.fields {
		f := &info.fields[i]
		fv := v.Field(f.index)
		fieldPath := joinPath(path, f.name)
		if f.required && isEmpty(fv) {
			return invalid(fieldPath, "is required")
		}
		if err := validateValue(f, fv, fieldPath); err != nil {
			return err
		}
	}
	if cv, ok := v.Addr().Interface().(crossFieldValidator); ok {
		return cv.validate()
	}
	return nil
}

func validateValue(f *fieldInfo, v reflect.Value, path string) *Error {
	switch {
	case v.Type() == secretType:
		s := v.Interface().(Secret)
		if s.value == nil { // sealed, and not opened: its form was checked
			return nil
		}
		if f.base64 {
			if problem := checkBase64(s.Reveal()); problem != "" {
				return invalid(path, problem)
			}
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return validateValue(f, v.Elem(), path)
	case reflect.Slice:
		if v.Len() < f.minItems {
			return invalid(path, fmt.Sprintf("must have at least %d entr%s", f.minItems, plural(f.minItems, "y", "ies")))
		}
		for i := range v.Len() {
			if err := validateValue(f, v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Struct:
		return validateStruct(v, path)
	case reflect.String:
		s := v.String()
		if f.base64 && s != "" {
			if problem := checkBase64(s); problem != "" {
				return invalid(path, problem)
			}
		}
		if f.path {
			if problem := checkName(s); problem != "" {
				return invalid(path, problem)
			}
		}
		if f.maxLength > 0 && utf8.RuneCountInString(s) > f.maxLength {
			return invalid(path, fmt.Sprintf("must be at most %d characters", f.maxLength))
		}
		if len(f.enum) > 0 && !slices.Contains(f.enum, s) {
			return invalid(path, fmt.Sprintf("must be one of %s, not %q", strings.Join(f.enum, ", "), truncate(s, 40)))
		}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// checkName returns what is wrong with a name that goes into an APIOps path as one
// segment, or "" when nothing is.
func checkName(s string) string {
	switch {
	case s == "":
		return "is required"
	case utf8.RuneCountInString(s) > MaxNameLength:
		return fmt.Sprintf("must be at most %d characters", MaxNameLength)
	case s == "." || s == "..":
		return `must not be "." or ".."`
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	}
	for _, r := range s {
		if r == '/' || r == '\\' || unicode.IsControl(r) {
			return `must not contain "/", "\" or control characters`
		}
	}
	return ""
}

// checkBase64 never quotes the value: it is a keystore file.
func checkBase64(s string) string {
	// The standard decoder skips line breaks; the contract does not allow them.
	if strings.ContainsAny(s, "\r\n") {
		return "must be standard base64 without line breaks"
	}
	n, err := base64.StdEncoding.Strict().DecodeString(s)
	switch {
	case err != nil:
		return "must be valid standard base64 (A-Z a-z 0-9 + /, padded with =)"
	case len(n) == 0:
		return "must not be empty"
	}
	return ""
}

// appendFields writes the struct v as a JSON object: the wire form of params (secrets
// as they arrived, sealed or not), or with body the APIOps request body (path and query
// fields left out, secrets revealed). Optional fields that were not set (nil pointers
// and slices, empty omitempty strings) are left out.
func appendFields(buf []byte, v reflect.Value, body bool) []byte {
	info := structInfoFor(v.Type())
	buf = append(buf, '{')
	first := true
	for i := range info.fields {
		f := &info.fields[i]
		fv := v.Field(f.index)
		if (body && (f.path || f.query)) || (!f.required && isEmpty(fv)) {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = strconv.AppendQuote(buf, f.name) // names are ASCII identifiers
		buf = append(buf, ':')
		buf = appendValue(buf, fv, body)
	}
	return append(buf, '}')
}

func appendValue(buf []byte, v reflect.Value, body bool) []byte {
	if v.Type() == secretType {
		s := v.Interface().(Secret)
		sealed, isSealed := s.Sealed()
		switch {
		case isSealed && !body:
			b, _ := json.Marshal(sealed) // cannot fail for strings
			return append(buf, b...)
		case isSealed && s.value == nil:
			// Sent on, it would be an empty password or file: a caller that builds the
			// request must decode with DecodeWith and an Opener.
			panic("messages: APIRequest of a command whose sealed secrets were not opened")
		}
		return appendJSONString(buf, s.Reveal())
	}
	switch v.Kind() {
	case reflect.Pointer:
		return appendValue(buf, v.Elem(), body)
	case reflect.Struct:
		return appendFields(buf, v, body)
	case reflect.Slice:
		buf = append(buf, '[')
		for i := range v.Len() {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendValue(buf, v.Index(i), body)
		}
		return append(buf, ']')
	case reflect.String:
		return appendJSONString(buf, v.String())
	case reflect.Bool:
		return strconv.AppendBool(buf, v.Bool())
	case reflect.Int:
		return strconv.AppendInt(buf, v.Int(), 10)
	}
	panic("messages: cannot encode " + v.Type().String())
}

func appendJSONString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s) // cannot fail for a string
	return append(buf, b...)
}
