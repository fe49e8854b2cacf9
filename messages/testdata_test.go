package messages_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// invalidCase is one line of testdata/invalid-commands.jsonl.
type invalidCase struct {
	Name    string `json:"name"`
	Project string `json:"project"`
	Type    string `json:"type"`
	Command string `json:"command"`
	Code    string `json:"code"`
	Field   string `json:"field"`
}

func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// exampleCommands returns testdata/commands/<type>.json by type.
func exampleCommands(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("../testdata/commands/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example commands: %v", err)
	}
	out := make(map[string][]byte)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f[:len(f)-len(".json")])] = data
	}
	return out
}
