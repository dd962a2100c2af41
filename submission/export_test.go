package submission

// LegacyContentHash is the v1 hash, for the tests of submissions recorded
// before v2.
var LegacyContentHash = legacyContentHash
