// Package mockauth is a mock XSUAA-style token service and connector with
// its own CA, for end-to-end tests.
package mockauth
