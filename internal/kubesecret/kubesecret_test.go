package kubesecret_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/kubesecret"
	"github.com/credbroker/credbroker/internal/kubesecret/fakeapi"
	"github.com/credbroker/credbroker/internal/testpki"
)

const (
	ns   = "apps"
	name = "identity"
)

// setup starts a fake API server and writes a service-account directory
// for it.
func setup(t *testing.T, token string) (*fakeapi.Server, kubesecret.Config, string) {
	t.Helper()
	ca := testpki.NewCA()
	api := fakeapi.Start(testpki.ServerTLSConfig(ca.Issue(testpki.WithIPs("127.0.0.1"), testpki.ServerAuth()), nil), token)
	t.Cleanup(api.Close)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "token"), token)
	write(t, filepath.Join(dir, "ca.crt"), string(ca.CertPEM()))
	write(t, filepath.Join(dir, "namespace"), ns+"\n")
	host, port := api.HostPort()
	return api, kubesecret.Config{Host: host, Port: port, ServiceAccountDir: dir, Name: name}, dir
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestGetUpdateCreateWithResourceVersions(t *testing.T) {
	g := NewWithT(t)
	api, cfg, _ := setup(t, "sa-token-1-abcdefgh")
	c, err := kubesecret.New(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Name()).To(Equal("apps/identity"), "the namespace comes from the service account")
	ctx := context.Background()

	_, err = c.Get(ctx)
	g.Expect(err).To(MatchError(kubesecret.ErrNotFound))
	_, err = c.Update(ctx, &kubesecret.Secret{ResourceVersion: "1", Data: map[string][]byte{"a": []byte("x")}})
	g.Expect(err).To(MatchError(kubesecret.ErrNotFound))

	created, err := c.Create(ctx, &kubesecret.Secret{Data: map[string][]byte{"tls.key": []byte("KEY-MATERIAL-1")}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(created.ResourceVersion).NotTo(BeEmpty())
	_, err = c.Create(ctx, &kubesecret.Secret{})
	g.Expect(err).To(MatchError(kubesecret.ErrConflict), "AlreadyExists is a conflict")

	got, err := c.Get(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.Data).To(HaveKeyWithValue("tls.key", []byte("KEY-MATERIAL-1")))

	// Compare-and-swap: the first update with the version read wins, the
	// second (same version) is a conflict.
	got.Annotations["x"] = "1"
	got.Data["tls.key"] = []byte("KEY-MATERIAL-2")
	upd, err := c.Update(ctx, got)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(upd.ResourceVersion).NotTo(Equal(got.ResourceVersion))
	_, err = c.Update(ctx, got)
	g.Expect(err).To(MatchError(kubesecret.ErrConflict))
	var se *kubesecret.StatusError
	g.Expect(errors.As(err, &se)).To(BeTrue())
	g.Expect(se.Code).To(Equal(409))
	g.Expect(err.Error()).NotTo(ContainSubstring("KEY-MATERIAL"))

	data, _ := api.Data(ns, name)
	g.Expect(data).To(HaveKeyWithValue("tls.key", []byte("KEY-MATERIAL-2")))
	g.Expect(api.Counts().Conflicts).To(Equal(2))
}

func TestUpdateKeepsWhatItDoesNotOwn(t *testing.T) {
	g := NewWithT(t)
	api, cfg, _ := setup(t, "sa-token-1-abcdefgh")
	api.Put(ns, name, nil)
	c, err := kubesecret.New(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	s, err := c.Get(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	s.Data = map[string][]byte{"k": []byte("v")}
	_, err = c.Update(context.Background(), s)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(api.Labels(ns, name)).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"))
}

// TestTokenIsReadBeforeEveryRequest: the kubelet rotates projected tokens;
// the next request uses the new one.
func TestTokenIsReadBeforeEveryRequest(t *testing.T) {
	g := NewWithT(t)
	api, cfg, dir := setup(t, "sa-token-1-abcdefgh")
	api.Put(ns, name, nil)
	c, err := kubesecret.New(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.Get(context.Background())
	g.Expect(err).NotTo(HaveOccurred())

	api.AddToken("sa-token-2-ijklmnop")
	api.RemoveToken("sa-token-1-abcdefgh")
	_, err = c.Get(context.Background())
	g.Expect(err).To(MatchError(ContainSubstring("401")), "the old token is refused")
	g.Expect(err.Error()).To(ContainSubstring("the service account needs get and update"))
	g.Expect(err.Error()).NotTo(ContainSubstring("sa-token"))
	write(t, filepath.Join(dir, "token"), "sa-token-2-ijklmnop\n")
	_, err = c.Get(context.Background())
	g.Expect(err).NotTo(HaveOccurred(), "the rotated token is read")

	write(t, filepath.Join(dir, "token"), "")
	_, err = c.Get(context.Background())
	g.Expect(err).To(MatchError(ContainSubstring("empty or malformed")))
}

func TestTLSIsVerifiedWithTheServiceAccountCA(t *testing.T) {
	g := NewWithT(t)
	_, cfg, dir := setup(t, "sa-token-1-abcdefgh")
	write(t, filepath.Join(dir, "ca.crt"), string(testpki.NewCA().CertPEM())) // another CA
	c, err := kubesecret.New(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.Get(context.Background())
	g.Expect(err).To(MatchError(ContainSubstring("certificate")))

	write(t, filepath.Join(dir, "ca.crt"), "not a certificate")
	_, err = kubesecret.New(cfg)
	g.Expect(err).To(MatchError(kubesecret.ErrConfig))
}

// TestHostileAnswers: a slow server times out, a huge body is cut at the
// bound, a non-Secret is refused, and nothing the server sent (but a short
// Status reason) reaches the error.
func TestHostileAnswers(t *testing.T) {
	ca := testpki.NewCA()
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/slow"):
			<-release
		case strings.HasSuffix(r.URL.Path, "/huge"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"kind":"Secret","data":{"a":"` + strings.Repeat("QUFB", 10000) + `"}}`))
		case strings.HasSuffix(r.URL.Path, "/notasecret"):
			_, _ = w.Write([]byte(`{"kind":"ConfigMap","metadata":{"resourceVersion":"1"}}`))
		case strings.HasSuffix(r.URL.Path, "/forbidden"):
			w.WriteHeader(403)
			_, _ = w.Write([]byte(`{"kind":"Status","reason":"Forbidden","message":"LEAKED-MESSAGE secrets is forbidden"}`))
		case strings.HasSuffix(r.URL.Path, "/badreason"):
			w.WriteHeader(500)
			_, _ = w.Write([]byte(`{"kind":"Status","reason":"LEAKED reason with spaces"}`))
		}
	}))
	srv.TLS = testpki.ServerTLSConfig(ca.Issue(testpki.WithIPs("127.0.0.1"), testpki.ServerAuth()), nil)
	srv.StartTLS()
	t.Cleanup(func() { close(release); srv.Close() })
	dir := t.TempDir()
	write(t, filepath.Join(dir, "token"), "sa-token-1-abcdefgh")
	write(t, filepath.Join(dir, "ca.crt"), string(ca.CertPEM()))
	a := srv.Listener.Addr().(*net.TCPAddr)
	client := func(n string) *kubesecret.Client {
		c, err := kubesecret.New(kubesecret.Config{Host: a.IP.String(), Port: strconv.Itoa(a.Port), ServiceAccountDir: dir,
			Namespace: "apps", Name: n, Timeout: 300 * time.Millisecond, MaxResponseBytes: 8192})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	g := NewWithT(t)
	_, err := client("slow").Get(context.Background())
	g.Expect(err).To(MatchError(context.DeadlineExceeded))
	_, err = client("huge").Get(context.Background())
	g.Expect(err).To(MatchError(ContainSubstring("larger than 8192 bytes")))
	_, err = client("notasecret").Get(context.Background())
	g.Expect(err).To(MatchError(ContainSubstring("not a Secret")))
	_, err = client("forbidden").Get(context.Background())
	g.Expect(err).To(MatchError(ContainSubstring("403 Forbidden (Forbidden)")))
	g.Expect(err.Error()).NotTo(ContainSubstring("LEAKED"))
	_, err = client("badreason").Get(context.Background())
	g.Expect(err).To(MatchError(ContainSubstring("500")))
	g.Expect(err.Error()).NotTo(ContainSubstring("LEAKED"))
}

func TestConfigIsChecked(t *testing.T) {
	g := NewWithT(t)
	_, cfg, _ := setup(t, "sa-token-1-abcdefgh")
	for _, bad := range []func(*kubesecret.Config){
		func(c *kubesecret.Config) { c.Host = "" },
		func(c *kubesecret.Config) { c.Name = "../../nodes" },
		func(c *kubesecret.Config) { c.Name = "UPPER" },
		func(c *kubesecret.Config) { c.Namespace = "a/b" },
		func(c *kubesecret.Config) { c.Timeout = -1 },
	} {
		c := cfg
		bad(&c)
		_, err := kubesecret.New(c)
		g.Expect(err).To(MatchError(kubesecret.ErrConfig))
	}
}

// TestDownServer: requests to a server that is down fail fast with an
// error, and succeed once it is back.
func TestDownServer(t *testing.T) {
	g := NewWithT(t)
	api, cfg, _ := setup(t, "sa-token-1-abcdefgh")
	api.Put(ns, name, nil)
	c, err := kubesecret.New(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	api.SetDown(true)
	_, err = c.Get(context.Background())
	g.Expect(err).To(HaveOccurred())
	api.SetDown(false)
	_, err = c.Get(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
}
