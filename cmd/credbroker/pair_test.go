package main

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/mockauth"
)

func clearPairEnv(t *testing.T) {
	for _, k := range []string{"CREDBROKER_TOKEN_URL", "CREDBROKER_TOKEN_URL_FILE", "CREDBROKER_CERT_DIR", "CREDBROKER_KEY_TYPE", "CREDBROKER_CA_FILE", "CREDBROKER_RESOLVE", "CREDBROKER_TIMEOUT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// startPairMock runs mockauth and writes its CA to a file.
func startPairMock(t *testing.T) (*mockauth.Server, string) {
	t.Helper()
	// ECDSA keys keep these tests quick: the mock's connector CA is ECDSA then
	// (by default it is RSA and refuses ECDSA CSRs, as Kyma's).
	srv, err := mockauth.Start(mockauth.Options{CertTTL: time.Hour, ECDSAConnectorCA: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, srv.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

func TestPairWritesTheDirectory(t *testing.T) {
	g := NewWithT(t)
	clearPairEnv(t)
	srv, caFile := startPairMock(t)
	u, tok, err := srv.NewPairingToken("app1")
	g.Expect(err).NotTo(HaveOccurred())
	urlFile := filepath.Join(t.TempDir(), "pairing-url")
	g.Expect(os.WriteFile(urlFile, []byte(u+"\n"), 0o600)).To(Succeed())
	dir := filepath.Join(t.TempDir(), "certs")

	code, out, errOut := runCmd("pair", "--token-url-file", urlFile, "--cert-dir", dir, "--ca-file", caFile, "--key-type", "ecdsa-p256", "--log-level", "debug")
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(out).To(ContainSubstring("Paired with " + srv.Info().ConnectorURL))
	g.Expect(out).To(ContainSubstring("CN=app1"))
	g.Expect(out).To(ContainSubstring("ECDSA P-256"))
	g.Expect(out).To(MatchRegexp(`serial:\s+\d+`))
	g.Expect(out).NotTo(ContainSubstring(tok))
	g.Expect(errOut).NotTo(ContainSubstring(tok))

	key, err := os.Stat(filepath.Join(dir, certwatch.KeyFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(key.Mode().Perm()).To(Equal(os.FileMode(0o600)))
	certPEM, _ := os.ReadFile(filepath.Join(dir, certwatch.CertFile))
	keyPEM, _ := os.ReadFile(filepath.Join(dir, certwatch.KeyFile))
	_, err = tls.X509KeyPair(certPEM, keyPEM)
	g.Expect(err).NotTo(HaveOccurred())
	ci, err := connector.LoadConnectionInfo(filepath.Join(dir, certwatch.ConnectionFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ci.Identity.Application).To(Equal("app1"))
	g.Expect(ci.RenewCertURL).NotTo(BeEmpty())
	g.Expect(out).To(ContainSubstring(ci.Serial))
	raw, _ := os.ReadFile(filepath.Join(dir, certwatch.ConnectionFile))
	g.Expect(string(raw)).NotTo(ContainSubstring(tok))
	pair, err := certwatch.LoadDir(context.Background(), dir)
	g.Expect(err).NotTo(HaveOccurred(), "certwatch loads what pair wrote")
	g.Expect(pair).NotTo(BeNil())

	// The same token again: refused, exit 1, a new token is needed.
	code, out, errOut = runCmd("pair", "--token-url-file", urlFile, "--cert-dir", dir, "--ca-file", caFile)
	g.Expect(code).To(Equal(exitRuntime))
	g.Expect(errOut).To(ContainSubstring("a new one-time token is needed"))
	g.Expect(errOut).To(ContainSubstring("Invalid token."))
	g.Expect(out + errOut).NotTo(ContainSubstring(tok))
}

func TestPairTokenURLFromTheEnvironment(t *testing.T) {
	g := NewWithT(t)
	clearPairEnv(t)
	srv, caFile := startPairMock(t)
	u, _, err := srv.NewPairingToken("app2")
	g.Expect(err).NotTo(HaveOccurred())
	t.Setenv("CREDBROKER_TOKEN_URL", u)
	t.Setenv("CREDBROKER_CA_FILE", caFile)
	code, out, errOut := runCmd("pair", "--cert-dir", t.TempDir(), "--key-type", "ecdsa")
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(out).To(ContainSubstring("CN=app2"))
}

func TestPairBadInputExitsTwoWithoutSpendingTheToken(t *testing.T) {
	clearPairEnv(t)
	srv, caFile := startPairMock(t)
	u, tok, err := srv.NewPairingToken("app3")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "a-file")
	_ = os.WriteFile(file, []byte("x"), 0o600)
	bad := filepath.Join(t.TempDir(), "bad.pem")
	_ = os.WriteFile(bad, []byte("not pem"), 0o600)
	dir := t.TempDir()
	cases := map[string][]string{
		"no token URL":     {"--cert-dir", dir},
		"no cert dir":      {"--token-url", u},
		"not a URL":        {"--token-url", "::not a url?token=" + tok, "--cert-dir", dir},
		"http":             {"--token-url", "http://connector.example.com/x?token=" + tok, "--cert-dir", dir},
		"no host":          {"--token-url", "https:///x?token=" + tok, "--cert-dir", dir},
		"bad port":         {"--token-url", "https://connector.localhost:99999/x?token=" + tok, "--cert-dir", dir},
		"both sources":     {"--token-url", u, "--token-url-file", file, "--cert-dir", dir},
		"missing url file": {"--token-url-file", file + ".missing", "--cert-dir", dir},
		"cert dir is file": {"--token-url", u, "--cert-dir", file},
		"bad key type":     {"--token-url", u, "--cert-dir", dir, "--key-type", "dsa"},
		"ca file not PEM":  {"--token-url", u, "--cert-dir", dir, "--ca-file", bad},
		"bad resolve rule": {"--token-url", u, "--cert-dir", dir, "--resolve", "nothing"},
		"positional":       {"--token-url", u, "--cert-dir", dir, "extra"},
		"ca file missing":  {"--token-url", u, "--cert-dir", dir, "--ca-file", bad + ".missing"},
		"zero timeout":     {"--token-url", u, "--cert-dir", dir, "--timeout", "0s"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			code, out, errOut := runCmd(append([]string{"pair"}, args...)...)
			g.Expect(code).To(Equal(exitInput), errOut)
			g.Expect(errOut).To(ContainSubstring("credbroker pair: "))
			g.Expect(out + errOut).NotTo(ContainSubstring(tok))
		})
	}
	// None of that spent the token.
	g := NewWithT(t)
	code, _, errOut := runCmd("pair", "--token-url", u, "--cert-dir", dir, "--ca-file", caFile, "--key-type", "ecdsa-p256")
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(srv.Stats().CSRSigned).To(Equal(1))
}

func TestPairHelpDocumentsEveryFlag(t *testing.T) {
	g := NewWithT(t)
	code, out, _ := runCmd("pair", "--help")
	g.Expect(code).To(Equal(exitOK))
	for _, f := range []string{"-token-url", "-token-url-file", "-cert-dir", "-key-type", "-ca-file", "-resolve", "-timeout", "CREDBROKER_TOKEN_URL"} {
		g.Expect(out).To(ContainSubstring(f))
	}
}
