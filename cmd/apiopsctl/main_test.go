package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/apiops-worker/apiops-worker/messages"
)

func TestValidateExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"validate", "../../testdata/rotation.jsonl"}, nil, &out, &errOut); code != 0 || out.Len() != 0 {
		t.Fatalf("valid file: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}

	input := strings.Join([]string{
		`{"id":"ok","type":"keystore.delete","project":"P","params":{"keystoreName":"k"}}`,
		`{"id":"bad-1","type":"keystore.delete","project":"P","params":{"keystoreName":".."}}`,
		``,
		`{"id":"bad-2","type":"keystore.create","project":"P","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"e","file":"%%%","password":"s3cret","keyStoreType":"JKS"}]}}`,
		`not json`,
	}, "\n")
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"validate", "-"}, strings.NewReader(input), &out, &errOut); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	want := []struct{ id, code, field string }{
		{"bad-1", messages.CodeInvalidCommand, "params.keystoreName"},
		{"bad-2", messages.CodeInvalidCommand, "params.keyStoreEnvironmentList[0].file"},
		{"", messages.CodeInvalidJSON, ""},
	}
	sc := bufio.NewScanner(&out)
	for i := 0; sc.Scan(); i++ {
		var r messages.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if i >= len(want) || r.ID != want[i].id || r.Status != messages.StatusRejected || r.Error.Code != want[i].code || r.Error.Field != want[i].field {
			t.Errorf("line %d: %s", i, sc.Bytes())
		}
	}
	if strings.Contains(out.String()+errOut.String(), "s3cret") {
		t.Error("output shows a password")
	}
	for _, line := range []string{"line 2:", "line 4:", "line 5:", "3 of 4 commands are invalid"} {
		if !strings.Contains(errOut.String(), line) {
			t.Errorf("stderr lacks %q:\n%s", line, errOut.String())
		}
	}
	if code := run(context.Background(), []string{"validate", "/does/not/exist"}, nil, &out, &errOut); code != 1 {
		t.Errorf("missing file: exit %d, want 1", code)
	}
	if code := run(context.Background(), []string{"nope"}, nil, &out, &errOut); code != 1 {
		t.Errorf("unknown command: exit %d, want 1", code)
	}
}

func TestDispatch(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"help"}, nil, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "submit FILE|-") || !strings.Contains(out.String(), "results ") {
		t.Errorf("help: exit %d:\n%s", code, out.String())
	}
	for _, sub := range []string{"submit", "results"} {
		errOut.Reset()
		if code := run(context.Background(), []string{sub, "-h"}, nil, &out, &errOut); code != 0 ||
			!strings.Contains(errOut.String(), "usage: apiopsctl "+sub) || !strings.Contains(errOut.String(), "NATS_PASSWORD") {
			t.Errorf("%s -h: exit %d:\n%s", sub, code, errOut.String())
		}
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"submit"}, nil, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "apiopsctl submit: ") {
		t.Errorf("submit without a file: exit %d, stderr %q", code, errOut.String())
	}
}
