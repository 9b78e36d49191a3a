// Package vcap reads service bindings and turns them into typed credentials.
//
// Bindings come from Cloud Foundry's VCAP_SERVICES JSON (ParseVCAP, LoadFile)
// or from a Kubernetes service-binding root (LoadDir: servicebinding.io and
// the SAP BTP service-operator layouts, through "..data" symlinks). Load
// picks the first source that is set, in the precedence of DESIGN.md. vcap
// reads no environment variable: the caller passes the values in Sources.
//
// Every binding gets a Binding with its identity (name, label, plan, tags,
// instance), its raw Credentials (which print only masked), and for auth
// services (xsuaa, identity/IAS) an AuthService: client id, the ClientSecret
// as a Secret, URLs, the parsed certificate chain and the PrivateKey, and the
// decision credbroker makes — Auth ("secret", "mtls" or "none") and the
// TokenURL it will call. Problems lists, per binding, why it is not usable;
// no problem text ever contains a secret.
//
//	set, err := vcap.Load(ctx, vcap.Sources{VCAPServices: os.Getenv("VCAP_SERVICES")},
//		vcap.WithKeyFile("/etc/credbroker/key.pem"), vcap.WithClock(time.Now))
//	if err != nil {
//		return err // source-level: unreadable, malformed JSON (with byte offset)
//	}
//	b, err := set.Select("")  // the xsuaa binding by plan order, or the IAS binding
//	if err != nil { … }
//	if err := b.Err(); err != nil { … } // expired certificate, missing key, …
//	cert, err := b.Auth.TLSCertificate() // for AuthMTLS
//	secret := b.Auth.ClientSecret.Reveal() // only where it is sent
package vcap
