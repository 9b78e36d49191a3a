package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/credbroker/credbroker/internal/atomicfile"
	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/tokenclient"
)

// TokenCacheSubdir is the directory credbroker creates (0700) under
// token_cache_dir for its token snapshots: the volume root itself is
// often 0777 and owned by root (a Kubernetes emptyDir).
const TokenCacheSubdir = "credbroker-tokens"

// tokenSnapshotVersion is the format of a snapshot file.
const tokenSnapshotVersion = 1

// tokenSnapshot is one binding's file: the binding's identity and its
// client_credentials tokens with their expiry. Never a client secret.
type tokenSnapshot struct {
	Version  int                 `json:"version"`
	ClientID string              `json:"client_id"`
	TokenURL string              `json:"token_url"`
	CertURL  string              `json:"cert_url,omitempty"`
	Tokens   []tokenclient.Saved `json:"tokens"`
}

// tokenDir persists token snapshots in token_cache_dir (docs/reliability.md).
type tokenDir struct {
	path    string // the 0700 subdirectory
	log     *slog.Logger
	metrics *sidecar.Metrics
	mu      sync.Mutex // serialises writes: the last one writes the latest snapshot
}

// openTokenDir creates (or checks) the 0700 subdirectory of root. A
// subdirectory that is a symlink or owned by another user is refused; one
// with wider permissions is narrowed.
func openTokenDir(root string, log *slog.Logger, m *sidecar.Metrics) (*tokenDir, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", root)
	}
	sub := filepath.Join(root, TokenCacheSubdir)
	if err := os.Mkdir(sub, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	fi, err = os.Lstat(sub)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory (a symlink?)", sub)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("%s: owned by uid %d, not by credbroker (uid %d)", sub, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(sub, 0o700); err != nil {
			return nil, err
		}
	}
	return &tokenDir{path: sub, log: log, metrics: m}, nil
}

// file is where the snapshot of the binding with cfg lives: named by a
// digest of its identity (client id, token URL, cert URL), so that a
// changed binding looks for another file.
func (d *tokenDir) file(cfg tokenclient.Config) string {
	sum := sha256.Sum256([]byte(cfg.ClientID + "\x00" + cfg.TokenURL + "\x00" + cfg.CertURL))
	return filepath.Join(d.path, hex.EncodeToString(sum[:16])+".json")
}

// load restores the binding's snapshot into cl. A missing file is
// nothing; a corrupt or foreign one is ignored with a warning.
func (d *tokenDir) load(binding string, cfg tokenclient.Config, cl *tokenclient.Client) {
	path := d.file(cfg)
	data, err := inputfile.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	ignore := func(why string, err error) {
		d.log.Warn("token_cache_dir: ignoring a token snapshot", "binding", binding, "file", path, "reason", why, "error", err)
		d.metrics.TokenSnapshotLoaded(binding, "ignored")
	}
	if err != nil {
		ignore("unreadable", err)
		return
	}
	var snap tokenSnapshot
	if json.Unmarshal(data, &snap) != nil {
		// Not the decoder's error: it may quote a character of the file.
		ignore("corrupt", errors.New("not a token snapshot"))
		return
	}
	if snap.Version != tokenSnapshotVersion {
		ignore("unknown version", fmt.Errorf("version %d", snap.Version))
		return
	}
	if snap.ClientID != cfg.ClientID || snap.TokenURL != cfg.TokenURL || snap.CertURL != cfg.CertURL {
		ignore("another binding's", errors.New("client id or token URL differ"))
		return
	}
	n := cl.Restore(snap.Tokens)
	for range n {
		d.metrics.TokenSnapshotLoaded(binding, "loaded")
	}
	for range len(snap.Tokens) - n {
		d.metrics.TokenSnapshotLoaded(binding, "ignored")
	}
	d.log.Info("token_cache_dir: loaded saved tokens", "binding", binding, "loaded", n, "ignored", len(snap.Tokens)-n)
}

// save writes the binding's tokens still served (0600, atomically).
func (d *tokenDir) save(binding string, cfg tokenclient.Config, cl *tokenclient.Client) {
	d.mu.Lock()
	defer d.mu.Unlock()
	snap := tokenSnapshot{Version: tokenSnapshotVersion, ClientID: cfg.ClientID, TokenURL: cfg.TokenURL, CertURL: cfg.CertURL, Tokens: cl.Saved()}
	if snap.Tokens == nil {
		snap.Tokens = []tokenclient.Saved{}
	}
	data, err := json.Marshal(snap)
	// A snapshot must stay loadable (inputfile.MaxSize): with very many
	// tenants, keep only part of the tokens.
	for err == nil && len(data) > inputfile.MaxSize/2 && len(snap.Tokens) > 0 {
		snap.Tokens = snap.Tokens[:len(snap.Tokens)/2]
		data, err = json.Marshal(snap)
	}
	if err == nil {
		err = atomicfile.WriteFile(context.Background(), d.file(cfg), data, 0o600)
	}
	if err != nil {
		d.log.Warn("token_cache_dir: could not save tokens", "binding", binding, "error", err)
	}
}
