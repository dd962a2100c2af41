package change

// DefaultTenant is the tenant of the top-level settings, and of every bulk
// change written before tenants existed (config/tenants.go).
const DefaultTenant = "default"
