package broker

import (
	"crypto/tls"
	"strings"

	"github.com/credbroker/credbroker/tokenclient"
	"github.com/credbroker/credbroker/vcap"
)

// TokenConfig maps a binding to the token client's plain settings: the one
// place where vcap's model meets tokenclient's, for `credbroker token`
// and the sidecar alike. A binding that cannot give tokens is an error that
// matches ErrConfig.
func TokenConfig(b *vcap.Binding) (tokenclient.Config, error) {
	a := b.Auth
	if a == nil {
		return tokenclient.Config{}, configErrorf("binding %q (%s): label %q is not an auth service (xsuaa or identity): no token endpoint", b.Name, b.Source, b.Label)
	}
	cfg := tokenclient.Config{
		ClientID:  a.ClientID,
		TokenURL:  a.URL,
		CertURL:   a.CertURL,
		UAADomain: a.UAADomain,
	}
	if a.Kind == vcap.KindIdentity {
		cfg.Flavor = tokenclient.IAS
		cfg.CertURL = "" // IAS takes the certificate on its url
	}
	switch a.Auth {
	case vcap.AuthSecret:
		cfg.ClientSecret = tokenclient.Secret(a.ClientSecret.Reveal())
	case vcap.AuthMTLS:
		cert, err := a.TLSCertificate()
		if err != nil {
			return cfg, configErrorf("binding %q (%s): credential-type %q: %v", b.Name, b.Source, a.CredentialType, err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	default:
		msg := "no usable credential"
		if len(b.Problems) > 0 {
			msg = strings.Join(b.Problems, "; ")
		}
		return cfg, configErrorf("binding %q (%s): %s", b.Name, b.Source, msg)
	}
	return cfg, nil
}
