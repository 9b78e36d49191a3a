package guard

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
