package mockauth

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"time"
)

// VCAPServices returns a VCAP_SERVICES JSON with three bindings pointing at
// the mock: an xsuaa binding-secret binding named "xsuaa-secret", an xsuaa
// x509 binding named "xsuaa-x509" (certificate and key trusted on the cert
// host) and an IAS binding (label "identity") named "ias". It holds secrets.
func (s *Server) VCAPServices() []byte {
	provider := s.tenants[0]
	der, _ := x509.MarshalPKIXPublicKey(&s.signer().key.PublicKey)
	verificationKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	common := func(c *client) map[string]any {
		return map[string]any{
			"clientid":        c.id,
			"url":             s.info.URL,
			"uaadomain":       UAADomain,
			"identityzone":    provider.Subdomain,
			"identityzoneid":  provider.ZoneID,
			"zoneid":          provider.ZoneID,
			"tenantid":        provider.ZoneID,
			"subaccountid":    provider.ZoneID,
			"tenantmode":      "shared",
			"xsappname":       c.xsappname,
			"verificationkey": verificationKey,
			"sburl":           "https://internal-xsuaa." + UAADomain,
			"apiurl":          "https://api." + UAADomain,
		}
	}
	secret := common(s.clients[SecretClientID])
	secret["clientsecret"] = s.clients[SecretClientID].secret
	secret["credential-type"] = "binding-secret"

	x := common(s.clients[X509ClientID])
	x["credential-type"] = "x509"
	x["certurl"] = s.info.CertURL
	x["certificate"] = string(s.bindingCertPEM)
	x["key"] = string(s.bindingKeyPEM)
	x["certificate_expires_at"] = s.bindingCert.Leaf.NotAfter.UTC().Format(time.RFC3339)

	ias := map[string]any{
		"clientid":               IASClientID,
		"clientsecret":           s.clients[IASClientID].secret,
		"url":                    s.info.IASURL,
		"domain":                 IASDomain,
		"domains":                []string{IASDomain},
		"app_tid":                provider.ZoneID,
		"zone_uuid":              provider.ZoneID,
		"authorization_endpoint": s.info.IASURL + "/oauth2/authorize",
		"token_endpoint":         s.info.IASURL + "/oauth2/token",
	}
	binding := func(name, label, plan string, creds map[string]any) map[string]any {
		return map[string]any{
			"name":             name,
			"instance_name":    name,
			"binding_name":     nil,
			"label":            label,
			"plan":             plan,
			"provider":         nil,
			"syslog_drain_url": nil,
			"tags":             []string{label},
			"volume_mounts":    []string{},
			"instance_guid":    "0c3e6a52-" + name,
			"binding_guid":     "9d2f1b3a-" + name,
			"credentials":      creds,
		}
	}
	v := map[string]any{
		"xsuaa": []any{
			binding(SecretBindingName, "xsuaa", "application", secret),
			binding(X509BindingName, "xsuaa", "application", x),
		},
		"identity": []any{binding(IASBindingName, "identity", "application", ias)},
	}
	s.destinationBindings(common, binding, v)
	b, _ := json.MarshalIndent(v, "", "  ")
	return b
}
