package api

import (
	"os"
	"regexp"
	"sort"
	"testing"
)

// TestSearchAttributesRegisteredEverywhere compares the search attributes
// the workflows set with the three places that register them on a server:
// the dev server's flags, scripts/search-attributes.sh (the
// PostgreSQL-backed server) and docker-compose.yml's temporal-setup
// service. One missing anywhere makes that server refuse every bulk change.
func TestSearchAttributesRegisteredEverywhere(t *testing.T) {
	want := map[string]string{}
	for _, key := range []interface{ GetName() string }{
		BulkChangeIDAttr, OperationAttr, ThingSpaceAccountAttr, BulkChangeStatusAttr, ICCIDAttr, TenantAttr,
	} {
		typ, ok := SearchAttributes[key.GetName()]
		if !ok {
			t.Fatalf("%s is set by the workflows but not in SearchAttributes", key.GetName())
		}
		want[key.GetName()] = typ
	}
	if len(want) != len(SearchAttributes) {
		t.Fatalf("SearchAttributes lists %d attributes, the workflows set %d", len(SearchAttributes), len(want))
	}

	devArgs := DevServerSearchAttributeArgs()
	dev := map[string]string{}
	for i := 0; i+1 < len(devArgs); i += 2 {
		m := regexp.MustCompile(`^(\w+)=(\w+)$`).FindStringSubmatch(devArgs[i+1])
		if devArgs[i] != "--search-attribute" || m == nil {
			t.Fatalf("dev server flags %q", devArgs)
		}
		dev[m[1]] = m[2]
	}
	compare(t, "the dev server's flags", want, dev)
	compare(t, "scripts/search-attributes.sh", want,
		pairs(t, "../../scripts/search-attributes.sh", `(?m)^(?:attributes=")?(\w+) (Keyword\w*)"?$`))
	compare(t, "docker-compose.yml", want, pairs(t, "../../docker-compose.yml", `\b(\w+)=(Keyword\w*)\b`))
}

func pairs(t *testing.T, path, pattern string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range regexp.MustCompile(pattern).FindAllStringSubmatch(string(b), -1) {
		got[m[1]] = m[2]
	}
	return got
}

func compare(t *testing.T, where string, want, got map[string]string) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if got[n] != want[n] {
			t.Errorf("%s registers %s as %q, the workflows need %q", where, n, got[n], want[n])
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			t.Errorf("%s registers %s, which no workflow sets", where, n)
		}
	}
}
