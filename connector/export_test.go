package connector

// The key and CSR helpers are internal; tests reach them here.
var (
	NewKey = newKey
	NewCSR = newCSR
)
