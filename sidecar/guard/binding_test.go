package guard

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
	"github.com/credbroker/credbroker/vcap"
)

func TestBindingFromVCAP(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, mockauth.Options{})
	set, err := vcap.ParseVCAP(srv.VCAPServices(), "test")
	g.Expect(err).NotTo(HaveOccurred())
	want := mockBindings(srv)
	for _, name := range []string{mockauth.SecretBindingName, mockauth.X509BindingName, mockauth.IASBindingName} {
		vb, err := set.ByName(name)
		g.Expect(err).NotTo(HaveOccurred())
		got, err := BindingFromVCAP(vb)
		g.Expect(err).NotTo(HaveOccurred(), name)
		w, _ := want(name)
		if name == mockauth.X509BindingName {
			g.Expect(got.CertURL).To(Equal(srv.Info().CertURL))
		}
		w.CertURL = vb.Auth.CertURL // the secret binding's vcap has no certurl
		if w.Flavor == FlavorIAS {
			w.CertURL = ""
		}
		g.Expect(got).To(Equal(w), name)
	}
	_, err = BindingFromVCAP(&vcap.Binding{Name: "db"})
	g.Expect(err).To(MatchError(ContainSubstring(`binding "db" is not an xsuaa`)))
	_, err = BindingFromVCAP(&vcap.Binding{Name: "x", Auth: &vcap.AuthService{Kind: vcap.KindXSUAA, ClientID: "c"}})
	g.Expect(err).To(MatchError(ContainSubstring(`"uaadomain"`)))
	_, err = BindingFromVCAP(nil)
	g.Expect(err).To(HaveOccurred())
}
