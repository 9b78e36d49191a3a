package guard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// identity is who a request was authenticated as.
type identity struct {
	method      Method
	subject     string
	clientID    string
	zone        string
	tenant      string
	scopes      []string
	certSubject string
}

// refusal is why a request was refused: a reason label (metrics), the
// status and challenge to answer with, and a detail for the log. None of
// them contains a credential.
type refusal struct {
	method Method
	reason string
	status int
	// bearerError is the RFC 6750 error code (jwt); oauthProblem the OAuth
	// problem code (oauth1).
	bearerError  string
	oauthProblem string
	scope        string // insufficient_scope: the scopes required
	detail       string
}

func (r *refusal) Error() string { return r.reason + ": " + r.detail }

// Reasons (metric label values).
const (
	ReasonNoRule            = "no_rule"
	ReasonNoCredentials     = "no_credentials"
	ReasonMalformed         = "malformed"
	ReasonBadAlgorithm      = "bad_algorithm"
	ReasonBadSignature      = "bad_signature"
	ReasonUnknownKey        = "unknown_key"
	ReasonKeysUnavailable   = "keys_unavailable"
	ReasonExpired           = "expired"
	ReasonNotYetValid       = "not_yet_valid"
	ReasonWrongIssuer       = "wrong_issuer"
	ReasonWrongAudience     = "wrong_audience"
	ReasonInsufficientScope = "insufficient_scope"
	ReasonUnknownBinding    = "unknown_binding"
	ReasonUntrustedCert     = "untrusted_certificate"
	ReasonCertExpired       = "certificate_expired"
	ReasonSubjectNotAllowed = "subject_not_allowed"
	ReasonSANNotAllowed     = "san_not_allowed"
	ReasonRevoked           = "revoked"
	ReasonStale             = "stale"
	ReasonReplay            = "replay"
	ReasonBodyHash          = "body_hash"
	ReasonBodyTooLarge      = "body_too_large"
	ReasonUnknownConsumer   = "unknown_consumer"
	ReasonUnsupported       = "unsupported"
	ReasonBusy              = "busy"
)

func jwtRefusal(reason, detail string) *refusal {
	r := &refusal{method: MethodJWT, reason: reason, status: 401, bearerError: "invalid_token", detail: detail}
	switch reason {
	case ReasonKeysUnavailable, ReasonKeyFetchLimited:
		r.status, r.bearerError = 503, ""
	case ReasonUnknownBinding:
		r.status, r.bearerError = 503, ""
	}
	return r
}

// jwtVerifier checks Bearer tokens of one binding.
type jwtVerifier struct {
	binding string
	lookup  BindingLookup
	keys    *keyCache
	leeway  time.Duration
	now     func() time.Time
}

// verify checks the token and, when scopes are given, that it carries them.
func (v *jwtVerifier) verify(ctx context.Context, raw string, scopes []string) (*identity, *refusal) {
	b, ok := v.lookup(v.binding)
	if !ok {
		return nil, jwtRefusal(ReasonUnknownBinding, fmt.Sprintf("binding %q is not available", v.binding))
	}
	var ref *refusal
	claims := jwt.MapClaims{}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), // an iat further in the future than the leeway is refused
	)
	keyURL := ""
	_, err := parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		url, r := jwksURL(b, t, claims)
		if r == nil {
			r = v.precheck(b, t, claims, url)
		}
		if r != nil {
			ref = r
			return nil, r
		}
		kid, _ := t.Header["kid"].(string)
		k, err := v.keys.key(ctx, url, kid)
		switch {
		case errors.Is(err, errUnknownKid):
			ref = jwtRefusal(ReasonUnknownKey, "no verification key with the token's kid")
		case errors.Is(err, errFetchLimited):
			ref = jwtRefusal(ReasonKeyFetchLimited, "verification keys of "+url+" not cached and key fetches are rate-limited; retry")
		case err != nil:
			ref = jwtRefusal(ReasonKeysUnavailable, "verification keys of "+url+" unavailable")
		}
		if ref != nil {
			return nil, ref
		}
		keyURL = url
		return k, nil
	})
	if err != nil {
		if ref != nil {
			return nil, ref
		}
		return nil, classifyJWTError(raw, err)
	}
	// Issuer was checked while choosing the keys; now the audience.
	if !audienceMatches(b, claims) {
		return nil, jwtRefusal(ReasonWrongAudience, fmt.Sprintf("token is not for binding %q", b.Name))
	}
	// The key set verified a token for this binding: it may stay.
	v.keys.confirm(keyURL)
	id := &identity{method: MethodJWT}
	id.subject, _ = claims["sub"].(string)
	id.clientID = firstString(claims, "client_id", "cid", "azp")
	id.scopes = stringList(claims["scope"])
	iss, _ := claims["iss"].(string)
	if b.Flavor == FlavorIAS {
		id.zone = firstString(claims, "app_tid", "zone_uuid")
	} else {
		id.zone, _ = claims["zid"].(string)
		if ext, ok := claims["ext_attr"].(map[string]any); ok {
			id.tenant, _ = ext["zdn"].(string)
		}
	}
	if id.tenant == "" {
		id.tenant = tenantOf(iss, b)
	}
	if missing := missingScopes(b, id.scopes, scopes); len(missing) > 0 {
		return id, &refusal{method: MethodJWT, reason: ReasonInsufficientScope, status: 403, bearerError: "insufficient_scope",
			scope: strings.Join(requiredScopes(b, scopes), " "), detail: "token lacks scopes " + strings.Join(missing, " ")}
	}
	return id, nil
}

// maxKeyURL bounds the key set URL (and so the issuer host) a token can
// name: a DNS name has at most 253 characters.
const maxKeyURL = 320

// precheck refuses, before any key is looked up or fetched, a token that
// would be refused anyway: no kid, an over-long issuer, not for this
// binding, or expired. A junk token must not cost a key fetch.
func (v *jwtVerifier) precheck(b Binding, t *jwt.Token, claims jwt.MapClaims, url string) *refusal {
	if len(url) > maxKeyURL {
		return jwtRefusal(ReasonWrongIssuer, "issuer host too long")
	}
	if kid, _ := t.Header["kid"].(string); kid == "" {
		return jwtRefusal(ReasonMalformed, "token header has no kid")
	}
	if !audienceMatches(b, claims) {
		return jwtRefusal(ReasonWrongAudience, fmt.Sprintf("token is not for binding %q", b.Name))
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return jwtRefusal(ReasonMalformed, "token has no valid exp")
	}
	if !v.now().Before(exp.Add(v.leeway)) {
		return jwtRefusal(ReasonExpired, "token expired")
	}
	return nil
}

func classifyJWTError(raw string, err error) *refusal {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return jwtRefusal(ReasonExpired, "token expired")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return jwtRefusal(ReasonNotYetValid, "token issued in the future (iat)")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return jwtRefusal(ReasonNotYetValid, "token not valid yet")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return jwtRefusal(ReasonMalformed, "token has no exp")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return jwtRefusal(ReasonMalformed, "token is not a well-formed JWT")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		if alg := headerAlg(raw); alg != "RS256" {
			return jwtRefusal(ReasonBadAlgorithm, fmt.Sprintf("algorithm %q not accepted (only RS256)", truncate(alg, 16)))
		}
		return jwtRefusal(ReasonBadSignature, "token signature invalid")
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return jwtRefusal(ReasonMalformed, "token claims invalid")
	}
	return jwtRefusal(ReasonMalformed, "token not accepted")
}

// headerAlg reads the alg of a JWT header without verifying anything.
func headerAlg(raw string) string {
	t, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil || t == nil {
		return ""
	}
	alg, _ := t.Header["alg"].(string)
	return alg
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// hostUnder reports whether u is https on a host equal to domain or under
// it, on the binding's port (443 when the binding URL has none).
func hostUnder(u *url.URL, domain, port string) bool {
	if u == nil || u.Scheme != "https" || u.User != nil || domain == "" {
		return false
	}
	h := strings.ToLower(u.Hostname())
	d := strings.ToLower(strings.TrimPrefix(domain, "."))
	if h != d && !strings.HasSuffix(h, "."+d) {
		return false
	}
	p := u.Port()
	if p == "" {
		p = "443"
	}
	return p == port
}

func bindingPort(b Binding) (host, port string) {
	u, err := url.Parse(b.URL)
	if err != nil || u.Host == "" {
		return "", "443"
	}
	port = u.Port()
	if port == "" {
		port = "443"
	}
	return strings.ToLower(u.Hostname()), port
}

// jwksURL decides where the token's keys come from, after checking its
// issuer against the binding. It never trusts a jku or issuer outside the
// binding's domain.
func jwksURL(b Binding, t *jwt.Token, claims jwt.MapClaims) (string, *refusal) {
	iss, _ := claims["iss"].(string)
	issURL, err := url.Parse(iss)
	if iss == "" || err != nil {
		return "", jwtRefusal(ReasonWrongIssuer, "token has no valid iss")
	}
	bhost, port := bindingPort(b)
	switch b.Flavor {
	case FlavorIAS:
		ok := hostUnder(issURL, bhost, port) && strings.EqualFold(issURL.Hostname(), bhost) ||
			b.UAADomain != "" && hostUnder(issURL, b.UAADomain, port)
		if !ok || (issURL.Path != "" && issURL.Path != "/") || issURL.RawQuery != "" {
			return "", jwtRefusal(ReasonWrongIssuer, fmt.Sprintf("issuer host %q is not binding %q's", truncate(issURL.Hostname(), 100), b.Name))
		}
		return "https://" + issURL.Host + "/oauth2/certs", nil
	default:
		domain := b.UAADomain
		if !hostUnder(issURL, domain, port) && !underCertDomain(issURL, b) {
			return "", jwtRefusal(ReasonWrongIssuer, fmt.Sprintf("issuer host %q is not under binding %q's uaadomain", truncate(issURL.Hostname(), 100), b.Name))
		}
		jku, _ := t.Header["jku"].(string)
		if jku == "" {
			if hostUnder(issURL, domain, port) {
				return "https://" + issURL.Host + "/token_keys", nil
			}
			// An issuer on the cert domain: the keys are on the matching
			// uaadomain host, which needs no client certificate.
			host := strings.Replace(strings.ToLower(issURL.Hostname()), ".authentication.cert.", ".authentication.", 1)
			if port != "443" {
				host = net.JoinHostPort(host, port)
			}
			return "https://" + host + "/token_keys", nil
		}
		ju, err := url.Parse(jku)
		if err != nil || !hostUnder(ju, domain, port) || ju.RawQuery != "" || ju.Fragment != "" || ju.Path != "/token_keys" {
			return "", jwtRefusal(ReasonWrongIssuer, fmt.Sprintf("jku is not a token_keys URL under binding %q's uaadomain", b.Name))
		}
		return "https://" + ju.Host + "/token_keys", nil
	}
}

// underCertDomain: XSUAA may name the mTLS host (authentication.cert.… of
// the binding's certurl) as the issuer of tokens fetched with a client
// certificate. Keys still come only from a jku under the uaadomain.
func underCertDomain(iss *url.URL, b Binding) bool {
	if b.CertURL == "" || !strings.HasPrefix(b.UAADomain, "authentication.") {
		return false
	}
	cu, err := url.Parse(b.CertURL)
	if err != nil {
		return false
	}
	port := cu.Port()
	if port == "" {
		port = "443"
	}
	return hostUnder(iss, "authentication.cert."+strings.TrimPrefix(b.UAADomain, "authentication."), port)
}

// audienceMatches: the token's client (client_id, cid or azp) is the
// binding's client, or aud names the binding's client id or xsappname.
func audienceMatches(b Binding, claims jwt.MapClaims) bool {
	for _, k := range []string{"client_id", "cid", "azp"} {
		if s, _ := claims[k].(string); s != "" && s == b.ClientID && b.Flavor != FlavorIAS {
			return true
		}
	}
	for _, a := range stringList(claims["aud"]) {
		if a == b.ClientID || (b.XSAppName != "" && a == b.XSAppName) {
			return true
		}
	}
	return false
}

// requiredScopes turns rule scopes into token scopes: XSUAA scopes are
// prefixed by xsappname + ".".
func requiredScopes(b Binding, scopes []string) []string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		if b.Flavor != FlavorIAS && b.XSAppName != "" && !strings.HasPrefix(s, b.XSAppName+".") {
			s = b.XSAppName + "." + s
		}
		out[i] = s
	}
	return out
}

func missingScopes(b Binding, have, want []string) []string {
	var missing []string
	for _, s := range requiredScopes(b, want) {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	return missing
}

// tenantOf is the first label of the issuer host when it is a subdomain of
// the binding's domain.
func tenantOf(iss string, b Binding) string {
	u, err := url.Parse(iss)
	if err != nil {
		return ""
	}
	h := strings.ToLower(u.Hostname())
	d := strings.ToLower(b.UAADomain)
	if d == "" || net.ParseIP(h) != nil || !strings.HasSuffix(h, "."+d) {
		return ""
	}
	label, _, _ := strings.Cut(strings.TrimSuffix(h, "."+d), ".")
	return label
}

func firstString(claims jwt.MapClaims, keys ...string) string {
	for _, k := range keys {
		if s, _ := claims[k].(string); s != "" {
			return s
		}
	}
	return ""
}

// stringList reads a claim that is a string (space-separated for scope) or
// an array of strings.
func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return strings.Fields(x)
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
