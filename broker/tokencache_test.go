package broker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/tokenclient"
)

func snapshotLoads(g Gomega, m *sidecar.Metrics, outcome string) float64 {
	mfs, err := m.Registry().Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, mf := range mfs {
		if mf.GetName() != "credbroker_token_snapshot_loads_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestTokenDirIsPrivate(t *testing.T) {
	g := NewWithT(t)
	root := t.TempDir()
	g.Expect(os.Chmod(root, 0o777)).To(Succeed())
	d, err := openTokenDir(root, slog.New(slog.DiscardHandler), sidecar.NewMetrics())
	g.Expect(err).NotTo(HaveOccurred())
	fi, err := os.Stat(d.path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o700)))

	g.Expect(os.Chmod(d.path, 0o755)).To(Succeed())
	_, err = openTokenDir(root, slog.New(slog.DiscardHandler), sidecar.NewMetrics())
	g.Expect(err).NotTo(HaveOccurred())
	fi, _ = os.Stat(d.path)
	g.Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o700)), "wider permissions are narrowed")

	other := t.TempDir()
	root2 := t.TempDir()
	g.Expect(os.Symlink(other, filepath.Join(root2, TokenCacheSubdir))).To(Succeed())
	_, err = openTokenDir(root2, slog.New(slog.DiscardHandler), sidecar.NewMetrics())
	g.Expect(err).To(MatchError(ContainSubstring("not a directory")), "a symlinked subdirectory is refused")
	_, err = openTokenDir(filepath.Join(root, "missing"), slog.New(slog.DiscardHandler), sidecar.NewMetrics())
	g.Expect(err).To(HaveOccurred())
}

func TestTokenDirSavesLoadsAndIgnoresForeignOrCorruptFiles(t *testing.T) {
	g := NewWithT(t)
	var logs syncbuf.Buffer
	m := sidecar.NewMetrics()
	d, err := openTokenDir(t.TempDir(), slog.New(slog.NewTextHandler(&logs, nil)), m)
	g.Expect(err).NotTo(HaveOccurred())
	cfg := tokenclient.Config{ClientID: "sb-app!t1", ClientSecret: "planted-client-secret-77", TokenURL: "https://provider.authentication.invalid"}
	newClient := func(cfg tokenclient.Config) *tokenclient.Client {
		c, err := tokenclient.New(cfg)
		g.Expect(err).NotTo(HaveOccurred())
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// A client holding one token (restored by hand: no token service here).
	a := newClient(cfg)
	g.Expect(a.Restore([]tokenclient.Saved{{Token: "planted-access-token-1", TokenType: "bearer", IssuedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}})).To(Equal(1))
	d.save("xsuaa", cfg, a)
	data, err := os.ReadFile(d.file(cfg))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).NotTo(ContainSubstring("planted-client-secret-77"))
	fi, _ := os.Stat(d.file(cfg))
	g.Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)))

	b := newClient(cfg)
	d.load("xsuaa", cfg, b)
	tok, err := b.Token(context.Background(), tokenclient.Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.AccessToken).To(Equal("planted-access-token-1"))
	g.Expect(snapshotLoads(g, m, "loaded")).To(Equal(1.0))

	// The same file offered to a changed binding (another client id, the
	// file renamed into its place): ignored.
	changed := cfg
	changed.ClientID = "sb-other!t2"
	g.Expect(os.Rename(d.file(cfg), d.file(changed))).To(Succeed())
	c := newClient(changed)
	d.load("xsuaa", changed, c)
	g.Expect(c.Saved()).To(BeEmpty())
	g.Expect(snapshotLoads(g, m, "ignored")).To(Equal(1.0))

	// A corrupt file: ignored, and the warning does not quote it.
	g.Expect(os.WriteFile(d.file(cfg), []byte(`{"version":1,"tokens":[{"access_token":planted-access-token-2`), 0o600)).To(Succeed())
	e := newClient(cfg)
	d.load("xsuaa", cfg, e)
	g.Expect(e.Saved()).To(BeEmpty())
	g.Expect(snapshotLoads(g, m, "ignored")).To(Equal(2.0))
	g.Expect(logs.String()).To(ContainSubstring("corrupt"))
	g.Expect(logs.String()).To(ContainSubstring("another binding's"))
	g.Expect(logs.String()).NotTo(ContainSubstring("planted"))
}

// A binding with very many tenants still writes a snapshot that loads.
func TestTokenDirSnapshotStaysLoadable(t *testing.T) {
	g := NewWithT(t)
	d, err := openTokenDir(t.TempDir(), slog.New(slog.DiscardHandler), sidecar.NewMetrics())
	g.Expect(err).NotTo(HaveOccurred())
	cfg := tokenclient.Config{ClientID: "c", ClientSecret: "s", TokenURL: "https://provider.authentication.invalid"}
	a, err := tokenclient.New(cfg, tokenclient.WithMaxKeys(5000))
	g.Expect(err).NotTo(HaveOccurred())
	defer a.Close()
	big := strings.Repeat("a", 8<<10)
	var saved []tokenclient.Saved
	for i := range 1000 {
		saved = append(saved, tokenclient.Saved{ZoneID: fmt.Sprintf("zone-%d", i), Token: "x" + big[:8<<10-1], IssuedAt: time.Now(), Expiry: time.Now().Add(time.Hour)})
	}
	g.Expect(a.Restore(saved)).To(Equal(1000))
	d.save("b", cfg, a)
	fi, err := os.Stat(d.file(cfg))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Size()).To(BeNumerically("<=", inputfile.MaxSize/2))
	b, err := tokenclient.New(cfg, tokenclient.WithMaxKeys(5000))
	g.Expect(err).NotTo(HaveOccurred())
	defer b.Close()
	d.load("b", cfg, b)
	g.Expect(len(b.Saved())).To(BeNumerically(">", 100))
}
