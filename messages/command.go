package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// MaxIDLength bounds a command's id and correlationId.
	MaxIDLength = 128
)

// Command is a decoded, valid command. Params points to the params struct of its type.
//
// Command's own JSON encoding (json.Marshal) redacts secrets, so a Command can be logged;
// Encode produces the wire form that a publisher sends.
type Command struct {
	ID            string     `json:"id"`
	Type          string     `json:"type,omitempty"`
	Project       string     `json:"project,omitempty"`
	CorrelationID string     `json:"correlationId,omitempty"`
	ReplyTo       string     `json:"replyTo,omitempty"`
	NotAfter      *time.Time `json:"notAfter,omitempty"`
	Params        Params     `json:"params"`
}

// envelope is the command as it travels, before params are decoded by type.
type envelope struct {
	ID            string          `json:"id"`
	Type          string          `json:"type,omitempty"`
	Project       string          `json:"project,omitempty"`
	CorrelationID string          `json:"correlationId,omitempty"`
	ReplyTo       *string         `json:"replyTo,omitempty"`
	NotAfter      *string         `json:"notAfter,omitempty"`
	Params        json.RawMessage `json:"params"`
}

// Error is why a command was not executed or did not succeed; it is the result's
// "error" object. Field is a path into the command's JSON, e.g.
// "params.keyStoreEnvironmentList[1].file". Messages never quote secret values.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Code + ": " + e.Message
	}
	return e.Code + ": " + e.Field + " " + e.Message
}

func invalid(field, message string) *Error {
	return &Error{Code: CodeInvalidCommand, Field: field, Message: message}
}

// Decode parses and validates a command that arrived on the subject for project and
// typeName (see Subjects.ParseCommand). The error is an *Error with the result's code
// and field.
//
// The returned Command is never nil: when the command is invalid it still carries the
// id, correlationId and replyTo that were valid, so that the rejection can be reported.
//
// Sealed secrets are checked for form only and stay sealed; see DecodeWith.
func Decode(project, typeName string, data []byte) (*Command, error) {
	return DecodeWith(project, typeName, data, DecodeOptions{})
}

// DecodeWith is Decode that also opens sealed secrets with o.Opener before validating
// them, and with o.RequireSealed rejects plaintext ones.
func DecodeWith(project, typeName string, data []byte, o DecodeOptions) (*Command, error) {
	cmd := &Command{Type: typeName, Project: project}
	if err := decode(cmd, data, o); err != nil {
		salvageEnvelope(cmd, data)
		return cmd, err
	}
	return cmd, nil
}

func decode(cmd *Command, data []byte, o DecodeOptions) *Error {
	if !json.Valid(data) {
		var syntaxErr *json.SyntaxError
		msg := "the command is not valid JSON"
		if err := json.Unmarshal(data, new(any)); errors.As(err, &syntaxErr) {
			// The offset, not the parser's text: that would quote a byte of the body.
			msg = fmt.Sprintf("the command is not valid JSON (syntax error at byte %d)", syntaxErr.Offset)
		}
		return &Error{Code: CodeInvalidJSON, Message: msg}
	}
	if cmd.Type == PlanType {
		return decodePlan(cmd, data, o)
	}
	var env envelope
	if err := decodeObject(data, reflect.ValueOf(&env).Elem(), ""); err != nil {
		if err.Field == "" {
			return &Error{Code: CodeInvalidJSON, Message: "the command must be a JSON object"}
		}
		return err
	}
	ct, ok := LookupType(cmd.Type)
	if !ok {
		return &Error{Code: CodeUnknownType, Field: "type", Message: fmt.Sprintf("unknown command type %q", truncate(cmd.Type, 64))}
	}
	if err := checkEnvelope(cmd, &env); err != nil {
		return err
	}
	if env.Params == nil {
		return invalid("params", "is required")
	}
	params, err := decodeParams(ct, env.Params, "params", cmd.Project, false, o)
	if err != nil {
		return err
	}
	cmd.Params = params
	return nil
}

// checkEnvelope checks what every command has, a plan included, and copies it into cmd.
func checkEnvelope(cmd *Command, env *envelope) *Error {
	if env.Type != "" && env.Type != cmd.Type {
		return &Error{Code: CodeSubjectMismatch, Field: "type", Message: fmt.Sprintf("is %q but the subject says %q", truncate(env.Type, 64), cmd.Type)}
	}
	if env.Project != "" && env.Project != cmd.Project {
		return &Error{Code: CodeSubjectMismatch, Field: "project", Message: fmt.Sprintf("is %q but the subject says %q", truncate(env.Project, 64), truncate(cmd.Project, 64))}
	}
	if problem := CheckProject(cmd.Project); problem != "" {
		return invalid("project", problem)
	}
	if problem := checkID(env.ID); problem != "" {
		return invalid("id", problem)
	}
	cmd.ID = env.ID
	if utf8.RuneCountInString(env.CorrelationID) > MaxIDLength {
		return invalid("correlationId", fmt.Sprintf("must be at most %d characters", MaxIDLength))
	}
	cmd.CorrelationID = env.CorrelationID
	if env.ReplyTo != nil {
		if problem := checkReplyTo(cmd.Project, *env.ReplyTo); problem != "" {
			return invalid("replyTo", problem)
		}
		cmd.ReplyTo = *env.ReplyTo
	}
	if env.NotAfter != nil {
		t, err := time.Parse(time.RFC3339, *env.NotAfter)
		if err != nil {
			return invalid("notAfter", "must be an RFC 3339 time, e.g. 2026-11-22T12:00:00Z")
		}
		cmd.NotAfter = &t
	}
	return nil
}

// decodeParams decodes, opens and validates the params of a command of type ct; path
// is where they are in the message ("params", or steps[2].params in a plan).
func decodeParams(ct CommandType, raw json.RawMessage, path, project string, undo bool, o DecodeOptions) (Params, *Error) {
	params := reflect.New(ct.params)
	if err := decodeValue(raw, params.Elem(), path); err != nil {
		return nil, err
	}
	if err := openSecrets(params.Elem(), path, project, o); err != nil {
		return nil, err
	}
	if err := validateStruct(params.Elem(), path); err != nil {
		// The cross-field rules name their fields from "params".
		if rest, ok := strings.CutPrefix(err.Field, "params"); ok && path != "params" {
			err.Field = path + rest
		}
		return nil, err
	}
	if r, ok := params.Interface().(resolvedByPlan); ok && !undo {
		if err := r.unresolved(); err != nil {
			err.Field = path + strings.TrimPrefix(err.Field, "params")
			return nil, err
		}
	}
	return params.Interface(), nil
}

// salvageEnvelope keeps what a rejection result may still use of an invalid command.
func salvageEnvelope(cmd *Command, data []byte) {
	var env struct {
		ID            any `json:"id"`
		CorrelationID any `json:"correlationId"`
		ReplyTo       any `json:"replyTo"`
	}
	if json.Unmarshal(data, &env) != nil {
		return
	}
	if s, ok := env.ID.(string); ok && checkID(s) == "" {
		cmd.ID = s
	}
	if s, ok := env.CorrelationID.(string); ok && utf8.RuneCountInString(s) <= MaxIDLength {
		cmd.CorrelationID = s
	}
	if s, ok := env.ReplyTo.(string); ok && checkReplyTo(cmd.Project, s) == "" {
		cmd.ReplyTo = s // the rejection goes there too, so it must pass the same rule
	}
}

// Validate checks a command built in Go before it is published, with the same rules
// and errors as Decode.
func (c *Command) Validate() error {
	data, err := c.Encode()
	if err != nil {
		return err
	}
	typeName := c.Type
	if ct, ok := TypeOf(c.Params); ok && typeName == "" {
		typeName = ct.Name
	}
	if _, ok := c.Plan(); ok {
		typeName = PlanType
	}
	_, err = Decode(c.Project, typeName, data)
	return err
}

// Encode returns the command's wire form, secrets included. Type is taken from Params
// when it is empty.
func (c *Command) Encode() ([]byte, error) {
	v := reflect.ValueOf(c.Params)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if p, ok := c.Plan(); ok {
		return encodePlan(c, p)
	}
	ct, ok := TypeOf(c.Params)
	if !ok {
		return nil, &Error{Code: CodeInvalidCommand, Field: "params", Message: fmt.Sprintf("%T is not the params of a command type", c.Params)}
	}
	buf := make([]byte, 0, 256)
	buf = append(buf, `{"id":`...)
	buf = appendJSONString(buf, c.ID)
	typeName := c.Type
	if typeName == "" {
		typeName = ct.Name
	}
	buf = append(buf, `,"type":`...)
	buf = appendJSONString(buf, typeName)
	for _, kv := range [][2]string{{"project", c.Project}, {"correlationId", c.CorrelationID}, {"replyTo", c.ReplyTo}} {
		if kv[1] != "" {
			buf = append(buf, `,"`+kv[0]+`":`...)
			buf = appendJSONString(buf, kv[1])
		}
	}
	if c.NotAfter != nil {
		buf = append(buf, `,"notAfter":`...)
		buf = appendJSONString(buf, c.NotAfter.Format(time.RFC3339Nano))
	}
	buf = append(buf, `,"params":`...)
	buf = appendFields(buf, v, false)
	return append(buf, '}'), nil
}

// Warnings returns advice about a valid command, e.g. that it disables a safety check.
func (c *Command) Warnings() []string {
	if w, ok := c.Params.(warner); ok {
		return w.warnings()
	}
	return nil
}

// DeployTargets are the environments the command asks APIOps to deploy to, nil when it
// asks for none (APIOps may still deploy on its own, as credential changes do).
func (c *Command) DeployTargets() []string {
	if d, ok := c.Params.(deployer); ok {
		return d.deployTargets()
	}
	return nil
}

// CommandType returns the command's type description.
func (c *Command) CommandType() CommandType {
	ct, _ := LookupType(c.Type)
	return ct
}

// ResourceKey names the resource the command changes, unique across projects and
// resource kinds, e.g. "MyProject/credential/api-user". Commands with the same key must
// not run at the same time.
func (c *Command) ResourceKey() string {
	ct := c.CommandType()
	v := reflect.ValueOf(c.Params).Elem()
	info := structInfoFor(v.Type())
	return c.Project + "/" + ct.Resource + "/" + v.Field(info.fields[info.resource].index).String()
}

// APIRequest is the APIOps call a command becomes. Body holds secrets: the type prints
// only its method and path.
type APIRequest struct {
	Method string
	// Path holds the path's segments unescaped; the client escapes each as one segment.
	Path  []string
	Query url.Values
	// Body is the JSON request body, or nil for endpoints that take none.
	Body []byte
	// ContentType is Body's media type when it is not JSON (a multipart form).
	ContentType string
	// KeystoreIDs are keystores that Body names and whose ids it must also carry: the
	// client reads each id from APIOps when it sends the request, since an id can change
	// whenever a keystore of that name is deleted and created again.
	KeystoreIDs []KeystoreIDLookup
}

// KeystoreIDLookup is a keystore of the request's project, named in the body, whose id
// goes into the body member Field.
type KeystoreIDLookup struct {
	Project, Name, Field string
}

func (r APIRequest) String() string { return r.Method + " /" + strings.Join(r.Path, "/") + "/" }

// Format prints what String does for every verb, so %+v cannot reveal the body.
func (r APIRequest) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

// APIRequest builds the APIOps call for the command. Only here are secrets revealed.
func (c *Command) APIRequest() APIRequest {
	ct := c.CommandType()
	v := reflect.ValueOf(c.Params).Elem()
	info := structInfoFor(v.Type())
	req := APIRequest{Method: ct.Method}
	for _, seg := range strings.Split(strings.Trim(ct.Path, "/"), "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			name = strings.TrimSuffix(name, "}")
			if name == "project" {
				seg = c.Project
			} else {
				seg = scalarText(v.Field(info.byName[name].index))
			}
		}
		req.Path = append(req.Path, seg)
	}
	hasBody := false
	for i := range info.fields {
		f := &info.fields[i]
		fv := v.Field(f.index)
		switch {
		case f.query:
			if fv.Kind() == reflect.Pointer && fv.IsNil() || fv.IsZero() {
				break
			}
			if req.Query == nil {
				req.Query = url.Values{}
			}
			req.Query.Set(f.name, scalarText(reflect.Indirect(fv)))
		case !f.path:
			hasBody = true
		}
		if f.keystoreIDField != "" && !fv.IsNil() {
			req.KeystoreIDs = append(req.KeystoreIDs, KeystoreIDLookup{Project: c.Project, Name: fv.Elem().String(), Field: f.keystoreIDField})
		}
	}
	switch {
	case hasBody && ct.Multipart:
		req.Body, req.ContentType = multipartBody(v, info)
	case hasBody:
		req.Body = appendFields(nil, v, true)
	}
	return req
}

// scalarText is a path or query value's text.
func scalarText(v reflect.Value) string {
	if v.Kind() == reflect.Int {
		return strconv.FormatInt(v.Int(), 10)
	}
	return v.String()
}

// multipartBody encodes the body fields of v as a multipart form: a file field
// (apiops:"file", base64 in the command) as a file part of its decoded bytes, each item
// of a list as a field of its own (as Spring binds a list), every other value as a
// field. Empty fields are left out, as they are from a JSON body. The boundary is a
// digest of the parts, so that the same command is the same request, and no part can
// hold it.
func multipartBody(v reflect.Value, info *structInfo) (body []byte, contentType string) {
	type part struct {
		name, value string
		file        bool
	}
	var parts []part
	digest := sha256.New()
	add := func(p part) {
		parts = append(parts, p)
		fmt.Fprintf(digest, "%d:%s%d:%s", len(p.name), p.name, len(p.value), p.value)
	}
	for i := range info.fields {
		f := &info.fields[i]
		fv := reflect.Indirect(v.Field(f.index))
		if f.path || f.query || !fv.IsValid() || isEmpty(fv) {
			continue
		}
		switch {
		case f.file:
			data, _ := base64.StdEncoding.DecodeString(fv.String()) // validated
			add(part{f.name, string(data), true})
		case fv.Kind() == reflect.Slice:
			for j := range fv.Len() {
				add(part{name: f.name, value: scalarText(fv.Index(j))})
			}
		default:
			add(part{name: f.name, value: scalarText(fv)})
		}
	}
	var buf bytes.Buffer
	form := multipart.NewWriter(&buf)
	_ = form.SetBoundary("apiops-" + hex.EncodeToString(digest.Sum(nil))[:40]) // valid: 47 characters of [a-z0-9-]
	for _, p := range parts {
		if p.file {
			w, _ := form.CreateFormFile(p.name, p.name+".pem") // writes to a bytes.Buffer: cannot fail
			_, _ = w.Write([]byte(p.value))
			continue
		}
		_ = form.WriteField(p.name, p.value)
	}
	_ = form.Close()
	return buf.Bytes(), form.FormDataContentType()
}

// CheckID returns what is wrong with a command id, or "" when nothing is.
func CheckID(id string) string { return checkID(id) }

func checkID(id string) string {
	if id == "" {
		return "is required"
	}
	if len(id) > MaxIDLength {
		return fmt.Sprintf("must be at most %d characters", MaxIDLength)
	}
	for _, r := range id {
		if !(r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-", r))) {
			return "may hold only A-Z a-z 0-9 . _ : -"
		}
	}
	return ""
}

// CheckProject returns what is wrong with a project name, or "" when nothing is: it must
// be one subject token and a valid path name.
func CheckProject(project string) string {
	if problem := checkToken(project); problem != "" {
		return problem
	}
	return checkName(project)
}

func checkToken(token string) string {
	if token == "" {
		return "is required"
	}
	if strings.ContainsAny(token, ".*>") || strings.IndexFunc(token, unicode.IsSpace) >= 0 {
		return `must be one subject token: no ".", "*", ">" or whitespace`
	}
	return ""
}

// checkSubject checks a subject that the worker will publish to.
func checkSubject(subject string) string {
	if subject == "" {
		return "must not be empty"
	}
	if strings.HasPrefix(subject, "$") {
		return `must not be a system subject (starting with "$")`
	}
	for token := range strings.SplitSeq(subject, ".") {
		switch {
		case token == "":
			return "must be a NATS subject: tokens separated by single dots, none empty"
		case token == "*" || token == ">":
			return "must not hold wildcards"
		case strings.IndexFunc(token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return "must not hold whitespace"
		}
	}
	return ""
}

// DecodeLine decodes a command that names its own type and project, as each line of a
// JSONL file does, with the same rules as Decode.
func DecodeLine(data []byte) (*Command, error) {
	var names struct {
		Type    any `json:"type"`
		Project any `json:"project"`
	}
	if json.Unmarshal(data, &names) != nil {
		return Decode("", "", data) // reports invalid_json
	}
	typeName, _ := names.Type.(string)
	project, _ := names.Project.(string)
	for _, f := range []struct{ field, value string }{{"type", typeName}, {"project", project}} {
		if f.value == "" {
			cmd := &Command{}
			salvageEnvelope(cmd, data)
			return cmd, invalid(f.field, "is required in a line that is not published on a subject")
		}
	}
	return Decode(project, typeName, data)
}
