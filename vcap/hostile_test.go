package vcap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testenv"
)

// A FIFO where a binding file should be is refused at once: opening it would
// block until a writer appears, and the command could not be stopped.
func TestNonRegularFilesAreRefusedWithoutBlocking(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "vcap.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		testenv.SkipOrFail(t, "mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Load(context.Background(), Sources{VCAPFile: fifo})
		done <- err
	}()
	var err error
	g.Eventually(done, 10*time.Second).Should(Receive(&err))
	g.Expect(errors.Is(err, ErrUnreadable)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("file " + fifo + ": unreadable: not a regular file"))

	in := vcapJSON(t, xsuaa("self", merge(baseXSUAACreds(), map[string]any{"clientsecret": "s3cret-value"})))
	go func() {
		_, err := ParseVCAP(in, SourceVCAPServices, WithKeyFile(fifo))
		done <- err
	}()
	g.Eventually(done, 10*time.Second).Should(Receive(&err))
	g.Expect(errors.Is(err, ErrUnreadable)).To(BeTrue(), "%v", err)

	// A character device is not a binding file either (it could be endless).
	_, err = Load(context.Background(), Sources{VCAPFile: os.DevNull})
	g.Expect(errors.Is(err, ErrUnreadable)).To(BeTrue(), "%v", err)
}

// A url or certurl that is not an absolute http(s) URL (also a JSON array or
// object where a string belongs) makes the binding unusable with a problem
// naming the field, never a token URL built from garbage.
func TestServiceURLMustBeAbsolute(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra map[string]any
		field string
	}{
		{"url is an array", map[string]any{"url": []string{"https://x.example"}, "clientsecret": "s3cret-value"}, "url"},
		{"url is an object", map[string]any{"url": map[string]any{"a": 1}, "clientsecret": "s3cret-value"}, "url"},
		{"url is a number", map[string]any{"url": 42, "clientsecret": "s3cret-value"}, "url"},
		{"url without scheme", map[string]any{"url": "provider.authentication.example", "clientsecret": "s3cret-value"}, "url"},
		{"url with another scheme", map[string]any{"url": "ftp://provider.authentication.example", "clientsecret": "s3cret-value"}, "url"},
		{"url with user info", map[string]any{"url": "https://user:pw-planted@provider.authentication.example", "clientsecret": "s3cret-value"}, "url"},
		{"url with control bytes", map[string]any{"url": "https://provider\x00.example", "clientsecret": "s3cret-value"}, "url"},
		{"certurl without host", map[string]any{"certurl": "https://", "credential-type": "x509"}, "certurl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			creds := merge(baseXSUAACreds(), tc.extra)
			if tc.field == "certurl" {
				p := testPKI
				creds["certificate"] = string(p.valid.CertPEM())
				creds["key"] = string(p.valid.KeyPEM(0))
			}
			b := only(t, mustSet(t, vcapJSON(t, xsuaa("hostile", creds)), WithClock(clock())))
			g.Expect(b.Auth).NotTo(BeNil())
			g.Expect(b.Auth.Auth).To(Equal(AuthNone))
			g.Expect(b.Auth.TokenURL).To(BeEmpty())
			g.Expect(errors.Is(b.Err(), ErrMalformed)).To(BeTrue(), "%v", b.Err())
			var ve *Error
			g.Expect(errors.As(b.Err(), &ve)).To(BeTrue())
			g.Expect(ve.Field).To(Equal(tc.field))
			g.Expect(b.Err().Error()).NotTo(ContainSubstring("pw-planted"))
			g.Expect(b.Err().Error()).NotTo(ContainSubstring("s3cret-value"))
		})
	}
}
