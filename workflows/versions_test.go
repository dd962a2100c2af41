package workflows

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// Every workflow.GetVersion call names its change id by a constant of
// versions.go, so that the list there is the whole list: a string literal
// (or a constant declared elsewhere) at a call is refused.
func TestVersionIDsAreDeclaredInVersionsGo(t *testing.T) {
	fset := token.NewFileSet()
	declared := map[string]bool{}
	vf, err := parser.ParseFile(fset, "versions.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range vf.Scope.Objects {
		if obj.Kind == ast.Con {
			declared[obj.Name] = true
		}
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "GetVersion" || len(call.Args) < 2 {
				return true
			}
			calls++
			if id, ok := call.Args[1].(*ast.Ident); !ok || !declared[id.Name] {
				t.Errorf("%s: GetVersion's change id is not a constant of versions.go", fset.Position(call.Pos()))
			}
			return true
		})
	}
	if calls == 0 {
		t.Fatal("found no GetVersion call: the test reads the wrong files")
	}
}
