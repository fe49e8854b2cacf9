package simulator_test

import (
	"reflect"
	"testing"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

// The built-in seed is the file in testdata, so that the demo runs from any directory
// and the tests read what it serves.
func TestDemoSeedIsBuiltIn(t *testing.T) {
	file, err := simulator.LoadSeed("../../testdata/apiops-seed.json")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(simulator.DemoSeed(), file) {
		t.Error("the built-in seed differs from testdata/apiops-seed.json")
	}
}
