// Package oauth1 signs and verifies RFC 5849 0-legged OAuth 1.0a requests.
package oauth1
