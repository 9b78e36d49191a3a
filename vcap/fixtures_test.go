package vcap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// The fixtures under testdata/xsuaa are SAP's own public test bindings
// (Apache-2.0, see testdata/xsuaa/PROVENANCE.md), copied byte for byte.
const fixtureDir = "testdata/xsuaa"

const fxPrefix = "SAP__cloud-security-services-integration-library__"

type fxBinding struct {
	name, label, plan, instance string
	tags                        []string
	ct, auth, tokenURL          string
	problems                    []string // substrings, one per expected problem; nil = usable
}

type fixture struct {
	path     string // relative to fixtureDir; directories are binding roots
	bindings []fxBinding
	xsuaa    string // name XSUAA() selects, "" = ErrNotFound
	identity string // name Identity() selects, "" = ErrNotFound
}

var fixtures = []fixture{
	{
		path: "SAP__cloud-security-xsuaa-integration__spring-xsuaa__src__test__resources__vcap.json",
		bindings: []fxBinding{{
			name: "example-xsuaa", label: "xsuaa", plan: "default", instance: "mw-xsuaa", tags: []string{"xsuaa"},
			ct: "x509", auth: "none",
			// The key is truncated in the original; the certificate expired in 2020.
			problems: []string{`field "key": private key does not parse`, `field "certificate": certificate expired: not after 2020-09-19T09:05:06Z`},
		}},
		xsuaa: "example-xsuaa",
	},
	{
		path: fxPrefix + "spring-security__src__test__resources__singleXsuaaAndIasBinding.json",
		bindings: []fxBinding{
			{name: "identityInstance0", label: "identity", plan: "broker", ct: "x509_generated", auth: "none",
				problems: []string{`field "certificate": certificate does not parse`, `field "key": private key does not parse`}},
			{name: "xsuaaInstance0", label: "xsuaa", plan: "application", auth: "none",
				problems: []string{`field "url": an http:// URL to a host other than loopback would send credentials in clear; want https:// (http:// only to loopback hosts)`}},
		},
		xsuaa: "xsuaaInstance0", identity: "identityInstance0",
	},
	{
		path: fxPrefix + "spring-security__src__test__resources__fourXsuaaBindingsAndOneIasBinding.json",
		bindings: []fxBinding{
			{name: "identityInstance0", label: "identity", plan: "broker", auth: "none",
				problems: []string{`field "url": an http:// URL to a host other than loopback would send credentials in clear; want https:// (http:// only to loopback hosts)`}},
			{name: "xsuaaInstance0", label: "xsuaa", plan: "broker", auth: "none", problems: []string{`field "url": missing field`}},
			{name: "xsuaaInstance1", label: "xsuaa", plan: "broker", auth: "none", problems: []string{`field "url": missing field`}},
			{name: "xsuaaInstance2", label: "xsuaa", plan: "application", auth: "none",
				problems: []string{`field "url": an http:// URL to a host other than loopback would send credentials in clear; want https:// (http:// only to loopback hosts)`}},
			{name: "xsuaaInstance3", label: "xsuaa", plan: "application", auth: "none",
				problems: []string{`field "url": an http:// URL to a host other than loopback would send credentials in clear; want https:// (http:// only to loopback hosts)`}},
		},
		xsuaa: "xsuaaInstance2", identity: "identityInstance0",
	},
	{
		path: fxPrefix + "env__src__test__resources__vcapXsuaaServiceSingleBinding.json",
		bindings: []fxBinding{{name: "example-xsuaa", label: "xsuaa", plan: "application", instance: "my-xsuaa", tags: []string{"xsuaa"},
			auth: "secret", tokenURL: "https://paastenant.auth.com/oauth/token"}},
		xsuaa: "example-xsuaa",
	},
	{
		path: fxPrefix + "env__src__test__resources__vcapXsuaaServiceMultipleBindings.json",
		bindings: []fxBinding{
			{name: "xsuaa-app", label: "xsuaa", plan: "application", instance: "xsuaa-app", tags: []string{"xsuaa"}, auth: "secret", tokenURL: "https://id-test-zone.uaadomain.org/oauth/token"},
			{name: "xsuaa-broker", label: "xsuaa", plan: "broker", instance: "xsuaa-broker", tags: []string{"xsuaa"}, auth: "secret", tokenURL: "https://id-test-zone.uaadomain.org/oauth/token"},
		},
		xsuaa: "xsuaa-app",
	},
	{
		path: fxPrefix + "env__src__test__resources__vcapXsuaaServiceMultipleApplicationPlanBindings.json",
		bindings: []fxBinding{
			{name: "xsuaa-broker", label: "xsuaa", plan: "broker", instance: "xsuaa-broker", tags: []string{"xsuaa"}, auth: "secret", tokenURL: "https://id-test-zone.uaadomain.org/oauth/token"},
			{name: "xsuaa-app", label: "xsuaa", plan: "application", instance: "xsuaa-app", tags: []string{"xsuaa"}, auth: "secret", tokenURL: "https://id-test-zone.uaadomain.org/oauth/token"},
			{name: "xsuaa-app2", label: "xsuaa", plan: "application", instance: "xsuaa-app2", tags: []string{"xsuaa"}, auth: "secret", tokenURL: "https://id-test-zone.uaadomain.org/oauth/token"},
		},
		xsuaa: "xsuaa-app", // the first application binding, as SAP's test expects (xsappname …!t8066)
	},
	{
		path: fxPrefix + "env__src__test__resources__vcapIasServiceSingleBinding.json",
		bindings: []fxBinding{{name: "myservice", label: "identity", plan: "application", instance: "myservice", tags: []string{},
			auth: "secret", tokenURL: "https://myauth.com/oauth2/token"}},
		identity: "myservice",
	},
	{
		path: fxPrefix + "env__src__test__resources__vcapIasServiceDomainsMissing.json",
		bindings: []fxBinding{{name: "myservice", label: "identity", plan: "application", instance: "myservice", tags: []string{},
			auth: "secret", tokenURL: "https://myauth.com/oauth2/token"}},
		identity: "myservice",
	},
	{
		path: fxPrefix + "env__src__test__resources__vcapXsuaaXsaSingleBinding.json",
		bindings: []fxBinding{{name: "java-uaa", label: "xsuaa", plan: "space", tags: []string{"xsuaa"},
			auth: "secret", tokenURL: "https://xsa-test.c.eu-de-2.cloud.sap:30132/uaa-security/oauth/token"}},
		xsuaa: "java-uaa",
	},
	{
		path: fxPrefix + "env__src__test__resources__vcapUnknownServicePlan.json",
		bindings: []fxBinding{{name: "xsuaa-unknown", label: "xsuaa", plan: "unknown", instance: "xsuaa-broker", tags: []string{"xsuaa"},
			auth: "secret", tokenURL: "https://id-test-zone.uaadomain.org/oauth/token"}},
		xsuaa: "", // an unknown plan is never selected, as in SAP's test
	},
	{
		path: "SAP__btp-environment-variable-access__sap-vcap-services__src__test__resources__SapVcapServicesServiceBindingAccessorTest__FullVcapServices.json",
		bindings: []fxBinding{
			{name: "destination-binding-1", label: "destination", plan: "broker", tags: []string{"destination-binding-1-tag-1", "destination-binding-1-tag-2"}},
			// Generic accessor data: "uri" instead of "url", so no token endpoint.
			{name: "xsuaa-binding-1", label: "xsuaa", plan: "lite", tags: []string{"xsuaa-binding-1-tag-1", "xsuaa-binding-1-tag-2"}, auth: "none", problems: []string{`field "url": missing field`}},
			{name: "xsuaa-binding-2", label: "xsuaa", plan: "application", tags: []string{"xsuaa-binding-2-tag-1", "xsuaa-binding-2-tag-2"}, auth: "none", problems: []string{`field "url": missing field`}},
		},
		xsuaa: "xsuaa-binding-2",
	},
	{
		path: "SAP__btp-environment-variable-access__sap-service-operator__src__test__resources__SapServiceOperatorServiceBindingIoAccessorTest__ValidMixedBindings",
		bindings: []fxBinding{
			// .metadata with text and json properties; no url in the data.
			{name: "data-xsuaa-binding", label: "xsuaa", plan: "application", instance: "data-xsuaa-instance-name", tags: []string{"data-xsuaa-tag-1", "data-xsuaa-tag-2"},
				auth: "none", problems: []string{`field "url": missing field`}},
			// .metadata with a container credentials.json.
			{name: "secret-key-xsuaa-binding", label: "xsuaa", plan: "lite", instance: "secret-key-xsuaa-instance-name", tags: []string{"secret-key-xsuaa-tag-1", "secret-key-xsuaa-tag-2"},
				auth: "secret", tokenURL: "https://secret-key-xsuaa-domain-1.com/oauth/token"},
		},
		xsuaa: "data-xsuaa-binding",
	},
	{
		path: "SAP__btp-environment-variable-access__sap-service-operator__src__test__resources__SapServiceOperatorServiceBindingIoAccessorTest__PartiallyValidMixedBindings",
		bindings: []fxBinding{
			{name: "data-xsuaa-binding", label: "xsuaa", plan: "application", instance: "data-xsuaa-instance-name", tags: []string{"data-xsuaa-tag-1", "data-xsuaa-tag-2"},
				auth: "none", problems: []string{`field "url": missing field`}},
			{name: "no-credentials", label: "xsuaa", plan: "lite", instance: "instance-name", tags: []string{"tag-1", "tag-2"}, problems: []string{`field "credentials": no credentials`}},
			// The single-JSON-blob layout without .metadata, and without a type.
			{name: "no-metadata-file", plan: "lite", tags: []string{"tag-1", "tag-2"}, problems: []string{`field "type": missing field`}},
			{name: "no-type-property", plan: "application", instance: "instance-name", tags: []string{"tag-1", "tag-2"}, problems: []string{`field "type": missing field`}},
			{name: "secret-key-xsuaa-binding", label: "xsuaa", plan: "lite", instance: "secret-key-xsuaa-instance-name", tags: []string{"secret-key-xsuaa-tag-1", "secret-key-xsuaa-tag-2"},
				auth: "secret", tokenURL: "https://secret-key-xsuaa-domain-1.com/oauth/token"},
		},
		xsuaa: "data-xsuaa-binding",
	},
	{
		// SAP's Go library layout: one file per entry, no type (the mount
		// path names the service); the identity kind is inferred from
		// "domains"/"app_tid". Its "credentials" file is plain text here.
		path:     "SAP__cloud-security-client-go__env__testdata__k8s/single-instance",
		bindings: []fxBinding{{name: "service-instance", auth: "secret", tokenURL: "https://mytenant.accounts400.ondemand.com/oauth2/token"}},
		identity: "service-instance",
	},
	{
		// The same as one JSON "credentials" file next to an empty one.
		path:     "SAP__cloud-security-client-go__env__testdata__k8s/single-instance-onecredentialsfile",
		bindings: []fxBinding{{name: "service-instance", auth: "secret", tokenURL: "https://mytenant.accounts400.ondemand.com/oauth2/token"}},
		identity: "service-instance",
	},
	{
		// Only a clientid each: not recognisable as a service, so "type" is missing.
		path: "SAP__cloud-security-client-go__env__testdata__k8s/multi-instances",
		bindings: []fxBinding{
			{name: "service-instance-1", problems: []string{`field "type": missing field`}},
			{name: "service-instance-2", problems: []string{`field "type": missing field`}},
		},
	},
}

func loadFixture(t *testing.T, rel string) *Set {
	t.Helper()
	p := filepath.Join(fixtureDir, rel)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	opt := WithClock(func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) })
	var s *Set
	if fi.IsDir() {
		s, err = LoadDir(context.Background(), p, opt)
	} else {
		s, err = LoadFile(context.Background(), p, opt)
	}
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return s
}

func TestFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.path, func(t *testing.T) {
			g := NewWithT(t)
			set := loadFixture(t, fx.path)
			g.Expect(set.Len()).To(Equal(len(fx.bindings)))
			for i, want := range fx.bindings {
				b := set.Bindings[i]
				g.Expect(b.Name).To(Equal(want.name))
				g.Expect(b.Label).To(Equal(want.label), b.Name)
				g.Expect(b.Plan).To(Equal(want.plan), b.Name)
				g.Expect(b.InstanceName).To(Equal(want.instance), b.Name)
				if want.tags != nil {
					g.Expect(b.Tags).To(ConsistOf(toAny(want.tags)...), b.Name)
				}
				g.Expect(b.Source).To(HavePrefix(sourcePrefix(fx.path)))
				if want.auth == "" {
					g.Expect(b.Auth).To(BeNil(), "%s is not an auth service", b.Name)
				} else {
					g.Expect(b.Auth).NotTo(BeNil(), b.Name)
					g.Expect(string(b.Auth.Auth)).To(Equal(want.auth), "%s: %v", b.Name, b.Problems)
					g.Expect(b.Auth.CredentialType).To(Equal(want.ct), b.Name)
					g.Expect(b.Auth.TokenURL).To(Equal(want.tokenURL), b.Name)
				}
				g.Expect(b.Problems).To(HaveLen(len(want.problems)), "%s: %q", b.Name, b.Problems)
				for j, p := range want.problems {
					g.Expect(b.Problems[j]).To(ContainSubstring(p), b.Name)
				}
				// Secrets from the fixture never appear in problems.
				if s, ok := b.Credentials.Get("clientsecret"); ok && len(s.Reveal()) > 4 {
					g.Expect(strings.Join(b.Problems, "\n")).NotTo(ContainSubstring(s.Reveal()))
				}
			}
			x, err := set.XSUAA()
			if fx.xsuaa == "" {
				g.Expect(errors.Is(err, ErrNotFound)).To(BeTrue())
			} else {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(x.Name).To(Equal(fx.xsuaa))
			}
			id, err := set.Identity()
			if fx.identity == "" {
				g.Expect(errors.Is(err, ErrNotFound)).To(BeTrue())
			} else {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(id.Name).To(Equal(fx.identity))
			}
		})
	}
}

// TestFixtureDetails pins typed fields SAP's own tests assert on.
func TestFixtureDetails(t *testing.T) {
	g := NewWithT(t)
	ias := loadFixture(t, fxPrefix+"env__src__test__resources__vcapIasServiceSingleBinding.json").Bindings[0].Auth
	g.Expect(ias.Kind).To(Equal(KindIdentity))
	g.Expect(ias.ClientID).To(Equal("T000310"))
	g.Expect(ias.ClientSecret.Reveal()).To(HavePrefix("pCghfbrL"))
	g.Expect(ias.Domains).To(Equal([]string{"myauth.com", "my.auth.com"}))

	app2 := loadFixture(t, fxPrefix+"env__src__test__resources__vcapXsuaaServiceMultipleApplicationPlanBindings.json")
	x, _ := app2.XSUAA()
	g.Expect(x.Auth.XSAppName).To(Equal("na-d6a3278d-5e07-40e9-92ae-546bbfd9cdde!t8066"))
	g.Expect(x.Auth.IdentityZone).To(Equal("id-test-zone"))
	g.Expect(x.Auth.IdentityZoneID).To(Equal("a179bf0f-5a57-2276-a3f0-94c6d79bd05b"))
	g.Expect(x.Auth.TenantID).To(Equal("a179bf0f-5a57-2276-a3f0-94c6d79bd05b"))
	g.Expect(x.Auth.UAADomain).To(Equal("uaadomain.org"))
	g.Expect(x.Auth.Domains).To(Equal([]string{"uaadomain.org"}))

	xsa := loadFixture(t, fxPrefix+"env__src__test__resources__vcapXsuaaXsaSingleBinding.json").Bindings[0].Auth
	g.Expect(xsa.ClientSecret.Reveal()).To(ContainSubstring("\n"), "JSON escapes in secrets are decoded")

	x509 := loadFixture(t, "SAP__cloud-security-xsuaa-integration__spring-xsuaa__src__test__resources__vcap.json").Bindings[0].Auth
	g.Expect(x509.CertURL).To(Equal("https://auth.cert.com"))
	g.Expect(x509.Certificates).To(HaveLen(1))
	g.Expect(x509.CertificateExpiresAt.UTC().Format(time.RFC3339)).To(Equal("2020-09-19T09:05:06Z"))
	g.Expect(x509.Key).To(BeNil())

	k8s := loadFixture(t, "SAP__cloud-security-client-go__env__testdata__k8s/single-instance").Bindings[0]
	g.Expect(k8s.Auth.AppTID).To(Equal("70cd0de3-528a-4655-b56a-5862591def5c"))
	g.Expect(k8s.Auth.Domains).To(Equal([]string{"accounts400.ondemand.com", "my.arbitrary.domain"}))
	g.Expect(k8s.Auth.ClientSecret.Reveal()).To(Equal("[the_CLIENT.secret:3[/abc"))
	g.Expect(k8s.Credentials.Has("ignore")).To(BeFalse(), "directories are not entries")

	op := loadFixture(t, "SAP__btp-environment-variable-access__sap-service-operator__src__test__resources__SapServiceOperatorServiceBindingIoAccessorTest__ValidMixedBindings")
	data, _ := op.ByName("data-xsuaa-binding")
	g.Expect(data.InstanceGUID).To(Equal("data-xsuaa-instance-guid"))
	g.Expect(data.Auth.Domains).To(Equal([]string{"data-xsuaa-domain-1", "data-xsuaa-domain-2"}), "json-format property")
	uaa, ok := data.Credentials.Get("uaa")
	g.Expect(ok).To(BeTrue())
	g.Expect(uaa.Reveal()).To(ContainSubstring(`"number":13.37`), "json property kept as JSON")
	sk, _ := op.ByName("secret-key-xsuaa-binding")
	g.Expect(sk.Auth.ClientID).To(Equal("secret-key-xsuaa-clientid"))
	g.Expect(sk.Credentials.Has("zone_uuid")).To(BeTrue(), "container keys become credentials")
}

func sourcePrefix(rel string) string {
	if strings.HasSuffix(rel, ".json") {
		return "file " + filepath.Join(fixtureDir, rel)
	}
	return "dir " + filepath.Join(fixtureDir, rel)
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
