package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/syncbuf"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

func TestMockCommandWritesFilesAndServes(t *testing.T) {
	g := NewWithT(t)
	dir := filepath.Join(t.TempDir(), "mock")
	var stdout, stderr syncbuf.Buffer
	e := &cmdEnv{stdout: &stdout, stderr: &stderr, log: slog.New(slog.NewTextHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runMock(ctx, e, &MockOptions{Dir: dir, TokenTTL: time.Minute, CertTTL: 30 * time.Second, PairingTTL: time.Minute, Application: "app9"})
	}()
	g.Eventually(func() error { _, err := os.Stat(filepath.Join(dir, mockInfoFile)); return err }).WithTimeout(10 * time.Second).Should(Succeed())

	var info mockauth.Info
	raw, err := os.ReadFile(filepath.Join(dir, mockInfoFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(json.Unmarshal(raw, &info)).To(Succeed())
	caPEM, err := os.ReadFile(filepath.Join(dir, mockCAFile))
	g.Expect(err).NotTo(HaveOccurred())
	roots := x509.NewCertPool()
	g.Expect(roots.AppendCertsFromPEM(caPEM)).To(BeTrue())
	client := &http.Client{Transport: &http.Transport{DialContext: mockauth.DialContext, TLSClientConfig: &tls.Config{RootCAs: roots}}}

	st, err := os.Stat(filepath.Join(dir, mockVCAPFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st.Mode().Perm()).To(Equal(os.FileMode(0o600)))
	vcapRaw, err := os.ReadFile(filepath.Join(dir, mockVCAPFile))
	g.Expect(err).NotTo(HaveOccurred())
	var vcap map[string][]struct {
		Name        string
		Credentials map[string]any
	}
	g.Expect(json.Unmarshal(vcapRaw, &vcap)).To(Succeed())
	creds := vcap["xsuaa"][0].Credentials
	g.Expect(vcap["xsuaa"][0].Name).To(Equal("xsuaa-secret"))
	secret := creds["clientsecret"].(string)
	resp, err := client.PostForm(creds["url"].(string)+"/oauth/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {creds["clientid"].(string)}, "client_secret": {secret},
	})
	g.Expect(err).NotTo(HaveOccurred())
	var tok map[string]any
	g.Expect(json.NewDecoder(resp.Body).Decode(&tok)).To(Succeed())
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(tok).To(HaveKeyWithValue("expires_in", BeNumerically("==", 60)))

	pairingURL, err := os.ReadFile(filepath.Join(dir, mockPairingURLFile))
	g.Expect(err).NotTo(HaveOccurred())
	u := strings.TrimSpace(string(pairingURL))
	g.Expect(u).To(HavePrefix(info.ConnectorURL))
	resp, err = client.Get(u)
	g.Expect(err).NotTo(HaveOccurred())
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
	g.Expect(string(body)).To(ContainSubstring("CN=app9"))

	out := stdout.Bytes()
	g.Expect(string(out)).To(ContainSubstring(info.URL))
	g.Expect(string(out)).To(ContainSubstring(filepath.Join(dir, mockPairingURLFile)))
	token := u[strings.Index(u, "token=")+6:]
	for _, leak := range []string{secret, token, tok["access_token"].(string)} {
		g.Expect(bytes.Contains(out, []byte(leak))).To(BeFalse())
		g.Expect(bytes.Contains(stderr.Bytes(), []byte(leak))).To(BeFalse())
	}

	cancel()
	g.Eventually(done).WithTimeout(10 * time.Second).Should(Receive(BeNil()))
	_, err = client.Get(info.URL + "/token_keys")
	g.Expect(err).To(HaveOccurred(), "the listeners are closed")
}

func TestMockCommandBadInput(t *testing.T) {
	g := NewWithT(t)
	for _, args := range [][]string{
		{"mock", "--cert-ttl", "-1s"},
		{"mock", "--token-ttl", "0s"},
		{"mock", "--pairing-ttl", "10ms"},
		{"mock", "--cert-ttl", "soon"},
		{"mock", "extra"},
		{"mock", "--application", "a/b"},
	} {
		var out, errOut bytes.Buffer
		g.Expect(run(args, &out, &errOut)).To(Equal(exitInput), strings.Join(args, " ")+": "+errOut.String())
	}
	var out, errOut bytes.Buffer
	g.Expect(run([]string{"mock", "--help"}, &out, &errOut)).To(Equal(exitOK))
	for _, f := range []string{"--dir", "--cert-ttl", "--token-ttl", "--two-phase", "--pairing-ttl", "--application"} {
		g.Expect(out.String()).To(ContainSubstring(f[2:]))
	}
}
