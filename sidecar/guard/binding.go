package guard

import (
	"fmt"

	"github.com/credbroker/credbroker/vcap"
)

// Flavor says which kind of auth server issued a binding's tokens.
type Flavor string

// Flavors.
const (
	FlavorXSUAA Flavor = "xsuaa"
	FlavorIAS   Flavor = "ias"
)

// Binding is what the guard needs to know about the xsuaa or IAS instance
// whose tokens a jwt rule accepts. The sidecar fills it from the binding
// (vcap); it holds no secret.
type Binding struct {
	// Name is the binding's name (rules[].binding).
	Name string
	// Flavor is xsuaa or ias.
	Flavor Flavor
	// ClientID is the binding's clientid.
	ClientID string
	// XSAppName is the xsuaa binding's xsappname (scope prefix and accepted
	// audience); empty for IAS.
	XSAppName string
	// UAADomain is the xsuaa binding's uaadomain (token issuers and key URLs
	// must be this host or a subdomain of it); for IAS the binding's domain
	// (optional: the host of URL is always accepted).
	UAADomain string
	// URL is the binding's url (the auth server of the provider tenant). Its
	// port, when it has one, is the only port accepted in issuers and key
	// URLs.
	URL string
	// CertURL is the xsuaa binding's certurl (optional). Tokens fetched
	// with mTLS may name its domain (authentication.cert.…) as issuer.
	CertURL string
}

// BindingLookup returns the binding with the given name. It must be safe for
// concurrent use; the guard calls it when it is built and again on every
// jwt request, so a rotated binding is picked up.
type BindingLookup func(name string) (Binding, bool)

// StaticBindings is a BindingLookup over a fixed list.
func StaticBindings(bs ...Binding) BindingLookup {
	m := make(map[string]Binding, len(bs))
	for _, b := range bs {
		m[b.Name] = b
	}
	return func(name string) (Binding, bool) { b, ok := m[name]; return b, ok }
}

// BindingFromVCAP is the guard's view of an xsuaa or identity (IAS)
// binding read by package vcap. It fails for other services and for auth
// bindings without a clientid.
func BindingFromVCAP(b *vcap.Binding) (Binding, error) {
	if b == nil || b.Auth == nil {
		name := ""
		if b != nil {
			name = b.Name
		}
		return Binding{}, fmt.Errorf("guard: binding %q is not an xsuaa or identity (IAS) binding", name)
	}
	out := Binding{Name: b.Name, ClientID: b.Auth.ClientID, XSAppName: b.Auth.XSAppName, URL: b.Auth.URL}
	if b.Auth.Kind == vcap.KindXSUAA {
		out.CertURL = b.Auth.CertURL
	}
	switch b.Auth.Kind {
	case vcap.KindXSUAA:
		out.Flavor, out.UAADomain = FlavorXSUAA, b.Auth.UAADomain
		if out.UAADomain == "" {
			return Binding{}, fmt.Errorf("guard: binding %q: field \"uaadomain\": missing (needed to check token issuers)", b.Name)
		}
	case vcap.KindIdentity:
		out.Flavor, out.XSAppName = FlavorIAS, ""
		if len(b.Auth.Domains) > 0 {
			out.UAADomain = b.Auth.Domains[0]
		}
		if out.URL == "" {
			return Binding{}, fmt.Errorf("guard: binding %q: field \"url\": missing (needed to check token issuers)", b.Name)
		}
	default:
		return Binding{}, fmt.Errorf("guard: binding %q is not an xsuaa or identity (IAS) binding", b.Name)
	}
	if out.ClientID == "" {
		return Binding{}, fmt.Errorf("guard: binding %q: field \"clientid\": missing", b.Name)
	}
	return out, nil
}
