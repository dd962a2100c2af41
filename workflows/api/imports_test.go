package api

import (
	"go/build"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/iot-ops/tsbulk/"

// projectDeps lists the project's packages that pkg (a path inside the
// module) imports, directly or not, test files left out.
func projectDeps(t *testing.T, pkg string) []string {
	t.Helper()
	seen := map[string]bool{}
	var walk func(string)
	walk = func(p string) {
		bp, err := build.ImportDir(filepath.Join("..", "..", filepath.FromSlash(p)), 0)
		if err != nil {
			t.Fatalf("read the imports of %s: %v", p, err)
		}
		for _, imp := range bp.Imports {
			dep, ok := strings.CutPrefix(imp, module)
			if ok && !seen[dep] {
				seen[dep] = true
				walk(dep)
			}
		}
	}
	walk(pkg)
	deps := make([]string, 0, len(seen))
	for d := range seen {
		deps = append(deps, d)
	}
	sort.Strings(deps)
	return deps
}

// The workflows' contract is the one piece of them the rest of the product
// may import: the contract itself stands on the vocabulary alone, the store
// on no workflow package, and the activities, the callback receiver and the
// submission code on the contract only (the workflow code imports them, so
// importing it back would be a cycle waiting to happen).
func TestWhatImportsTheWorkflows(t *testing.T) {
	if deps := projectDeps(t, "workflows/api"); len(deps) != 1 || deps[0] != "change" {
		t.Errorf("workflows/api imports %v of the project; only change", deps)
	}
	for pkg, allowed := range map[string]string{
		"db":         "",
		"activities": "workflows/api",
		"callbacks":  "workflows/api",
		"submission": "workflows/api",
		"thingspace": "",
		"changefile": "",
		"change":     "",
		"revio":      "",
		"ratelimit":  "",
		"luhn":       "",
		"metrics":    "",
		"config":     "workflows/api",
	} {
		for _, dep := range projectDeps(t, pkg) {
			if strings.HasPrefix(dep, "workflows") && dep != allowed {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
}
