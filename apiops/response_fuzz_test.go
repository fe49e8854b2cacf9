package apiops

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
)

// FuzzReadSuccess: no 2xx body is read as saved unless its top level says success (and
// nothing there says failure), a deployment is never reported successful while one of
// its environments failed, and an unrecognised body is never quoted. The oracle decodes
// with encoding/json into plain maps, independently of the reader.
func FuzzReadSuccess(f *testing.F) {
	data, err := os.ReadFile("../testdata/apiops/responses.json")
	if err != nil {
		f.Fatal(err)
	}
	var recorded []struct {
		Body json.RawMessage `json:"body"`
		Text *string         `json:"text"`
	}
	if err := json.Unmarshal(data, &recorded); err != nil {
		f.Fatal(err)
	}
	for _, r := range recorded {
		if r.Text != nil {
			f.Add([]byte(*r.Text))
		} else {
			f.Add([]byte(r.Body))
		}
	}
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := readSuccess("PUT /x/", resp, body)
		if err != nil {
			e := err.(*Error)
			if e.Kind != Permanent {
				t.Fatalf("a 2xx body gave a %s error", e.Kind)
			}
			if e.Code == CodeUnrecognisedResponse && len(body) >= 16 && strings.Contains(e.Error(), string(body)) {
				t.Fatalf("the error quotes the body: %v", e)
			}
			return
		}
		var top map[string]any
		if json.Unmarshal(body, &top) != nil {
			t.Fatalf("read as saved, but not a JSON object: %q", body)
		}
		if !(top["success"] == true || top["status"] == "SUCCESS") || top["success"] == false || top["status"] == "FAILURE" {
			t.Fatalf("read as saved, but the body does not say success: %q", body)
		}
		if d := got.DeploymentResult; d != nil && d.Success {
			for _, env := range d.EnvironmentResults {
				if !env.Success {
					t.Fatalf("deployment successful with %s failed: %q", env.EnvironmentName, body)
				}
			}
		}
	})
}
