package schema_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/apiops-worker/apiops-worker/messages/schema"
)

var update = flag.Bool("update", false, "rewrite the checked-in schema files")

func TestSchemaFilesMatchTypes(t *testing.T) {
	files, err := schema.Files()
	if err != nil {
		t.Fatal(err)
	}
	onDisk, _ := filepath.Glob("*.json")
	for _, name := range onDisk {
		if _, ok := files[name]; !ok {
			if *update {
				if err := os.Remove(name); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s is checked in but no longer generated; run make schema", name)
		}
	}
	for name, want := range files {
		if *update {
			if err := os.WriteFile(name, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the Go types generate; run make schema", name)
		}
	}
}
