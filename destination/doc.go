// Package destination resolves SAP BTP destinations: it calls the
// Destination service's "find destination" API
// (GET {uri}/destination-configuration/v1/destinations/{name}) with a token
// of the destination binding, turns the answer into what an outbound request
// needs (URL, headers, query parameters, client certificate, on-premise
// location) and caches it per (tenant, user, destination).
//
// The package is a leaf: tokens of the destination binding reach it through
// the TokenSource interface, HTTP through an *http.Client.
//
// Cache rules (see Cache):
//   - the key is (tenant, user key, destination name); the user key is
//     issuer + zone + user claim of the user token (user_id, else sub, for
//     XSUAA; user_uuid for IAS), never the token text; an entry is served
//     only to the token that fetched it (a hit finds it by a seeded fast
//     hash of the token and compares the token with the entry's copy in
//     constant time), so a different token (even one that claims the same
//     user) never reads it;
//   - an entry expires at the earliest of the auth token's expiry, the user
//     token's exp and the configured TTL, minus the skew;
//   - a hit in the refresh-ahead window starts one background refresh;
//     concurrent misses of one key make one lookup;
//   - while the service is down, a valid entry is served;
//   - the number of entries is bounded.
//
// Usage:
//
//	c, _ := destination.NewClient(binding.URI, tokens)
//	cache := destination.NewCache(c, destination.CacheConfig{})
//	d, err := cache.Get(ctx, destination.Request{Name: "erp", Tenant: "acme", UserToken: jwt})
package destination
