package apiops

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"

	"github.com/apiops-worker/apiops-worker/messages"
)

// Read sends req, a GET, and returns the entries APIOps answered with: the items of
// resultList, or, for a body that has none, the body itself (some pages show a
// single entry's members beside success). A body whose success or status it does not
// recognise, or whose resultList is not a list of objects, is a Permanent *Error
// coded CodeUnrecognisedResponse; a body that says it failed is a Permanent *Error
// with APIOps's resultMessage, as Do's.
func (c *Client) Read(ctx context.Context, req messages.APIRequest) ([]map[string]json.RawMessage, error) {
	a, err := c.exchange(ctx, req)
	if err != nil {
		return nil, err
	}
	if !a.ok() {
		return nil, a.refused()
	}
	unrecognised := &Error{Op: a.op, StatusCode: a.resp.StatusCode, Kind: Permanent, Code: CodeUnrecognisedResponse,
		Description: fmt.Sprintf("APIOps answered %d with a body the worker does not recognise (%s)", a.resp.StatusCode, describeBody(a.resp, a.data))}
	body, ok := object(a.data)
	saved, known := verdict(body)
	switch {
	case !ok || !known:
		return nil, unrecognised
	case !saved:
		message, _ := Member[string](body, "resultMessage")
		return nil, a.scrubbed(&Error{Op: a.op, StatusCode: a.resp.StatusCode, Kind: Permanent, Description: cmp.Or(message, "APIOps answered that the read failed, without saying why")})
	case !HasMember(body, "resultList"):
		return []map[string]json.RawMessage{body}, nil
	}
	items, isList := array(body["resultList"])
	if !isList {
		return nil, unrecognised
	}
	entries := make([]map[string]json.RawMessage, 0, len(items))
	for _, item := range items {
		entry, isObject := object(item)
		if !isObject {
			return nil, unrecognised
		}
		entries = append(entries, entry)
	}
	return entries, nil
}

// Export downloads a keystore's file for one environment (GET
// .../keystores/{name}/export-file/?environmentName=): the answer's bytes, as they
// came. A JSON answer is APIOps refusing, whatever its status, or a body the worker
// does not recognise: a keystore file is never JSON.
func (c *Client) Export(ctx context.Context, project, keystore, environment string) ([]byte, error) {
	req := messages.APIRequest{Method: http.MethodGet, Path: []string{"apiops", "projects", project, "keystores", keystore, "export-file"},
		Query: map[string][]string{"environmentName": {environment}}}
	a, err := c.exchange(ctx, req)
	if err != nil {
		return nil, err
	}
	if !a.ok() {
		return nil, a.refused()
	}
	if mediaType, _, _ := mime.ParseMediaType(a.resp.Header.Get("Content-Type")); mediaType == "application/json" || len(a.data) == 0 {
		body, _ := object(a.data)
		if saved, known := verdict(body); known && !saved {
			message, _ := Member[string](body, "resultMessage")
			return nil, a.scrubbed(&Error{Op: a.op, StatusCode: a.resp.StatusCode, Kind: Permanent, Description: cmp.Or(message, "APIOps refused the export, without saying why")})
		}
		return nil, &Error{Op: a.op, StatusCode: a.resp.StatusCode, Kind: Permanent, Code: CodeUnrecognisedResponse,
			Description: fmt.Sprintf("APIOps answered the export with no keystore file (%s)", describeBody(a.resp, a.data))}
	}
	return a.data, nil
}
