package worker_test

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The package's shape, kept: every function fits a screen, and no two files call each
// other both ways (a caller calls back only through a function value or interface it
// owns, as runPlan's stepDecider). See doc.go.
func TestHouseRules(t *testing.T) {
	t.Parallel() // type-checks the package: CPU the tests that wait for leases leave idle
	if testing.Short() {
		t.Skip("type-checks the package from source")
	}
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}

	const maxLines = 60
	for _, f := range files {
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok {
				start, end := fset.Position(fn.Pos()), fset.Position(fn.End())
				if lines := end.Line - start.Line + 1; lines > maxLines {
					t.Errorf("%s:%d: %s is %d lines, over %d", start.Filename, start.Line, fn.Name.Name, lines, maxLines)
				}
			}
		}
	}

	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	info := &types.Info{Uses: make(map[*ast.Ident]types.Object)}
	pkg, err := conf.Check("github.com/apiops-worker/apiops-worker/worker", fset, files, info)
	if err != nil {
		t.Fatal(err)
	}
	calls := make(map[[2]string][]string) // [caller's file, callee's file] → callees
	for id, obj := range info.Uses {
		fn, ok := obj.(*types.Func)
		if !ok || fn.Pkg() != pkg {
			continue
		}
		from, to := fset.Position(id.Pos()).Filename, fset.Position(fn.Pos()).Filename
		if from != to && !slices.Contains(calls[[2]string{from, to}], fn.Name()) {
			calls[[2]string{from, to}] = append(calls[[2]string{from, to}], fn.Name())
		}
	}
	for pair, callees := range calls {
		if back := calls[[2]string{pair[1], pair[0]}]; pair[0] < pair[1] && back != nil {
			t.Errorf("%s and %s call each other: %v one way, %v the other", pair[0], pair[1], callees, back)
		}
	}
}
