// Package certwatch owns a live client certificate: it loads, watches,
// renews and persists it.
package certwatch
