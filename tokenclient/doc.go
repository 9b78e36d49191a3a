// Package tokenclient is an OAuth 2.0 token client for XSUAA and IAS style
// token services.
package tokenclient
