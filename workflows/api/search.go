package api

import (
	"go.temporal.io/sdk/temporal"
)

// Custom search attributes, so that an operator finds bulk changes and
// device workflows in the Web UI and with `temporal workflow list --query`.
// They must be registered on the server (scripts/search-attributes.sh;
// the dev server gets them as --search-attribute flags): a workflow started
// with an unknown one is refused.
var (
	// BulkChangeIDAttr is on a bulk change and on each of its device
	// workflows.
	BulkChangeIDAttr = temporal.NewSearchAttributeKeyKeyword("BulkChangeId")
	// OperationAttr: the operations of a bulk change; the one of a device.
	OperationAttr = temporal.NewSearchAttributeKeyKeywordList("Operation")
	// ThingSpaceAccountAttr is the bulk change's ThingSpace account.
	ThingSpaceAccountAttr = temporal.NewSearchAttributeKeyKeyword("ThingSpaceAccount")
	// BulkChangeStatusAttr is the bulk change's status, kept current by its
	// workflow (RUNNING, FINISHED, ...).
	BulkChangeStatusAttr = temporal.NewSearchAttributeKeyKeyword("BulkChangeStatus")
	// ICCIDAttr is on each device workflow: every change of a device, across
	// bulk changes.
	ICCIDAttr = temporal.NewSearchAttributeKeyKeyword("ICCID")
	// TenantAttr is the tenant of a bulk change and of its device
	// workflows (absent from those started before tenants).
	TenantAttr = temporal.NewSearchAttributeKeyKeyword("Tenant")
)

// SearchAttributes lists the custom search attributes with their types as
// the server registers them (name → Keyword or KeywordList).
var SearchAttributes = map[string]string{
	BulkChangeIDAttr.GetName():      "Keyword",
	OperationAttr.GetName():         "KeywordList",
	ThingSpaceAccountAttr.GetName(): "Keyword",
	BulkChangeStatusAttr.GetName():  "Keyword",
	ICCIDAttr.GetName():             "Keyword",
	TenantAttr.GetName():            "Keyword",
}

// DevServerSearchAttributeArgs are the `temporal server start-dev` flags
// that register the search attributes.
func DevServerSearchAttributeArgs() []string {
	var args []string
	for _, name := range []string{"BulkChangeId", "Operation", "ThingSpaceAccount", "BulkChangeStatus", "ICCID", "Tenant"} {
		args = append(args, "--search-attribute", name+"="+SearchAttributes[name])
	}
	return args
}
