package broker

import (
	"log/slog"

	"github.com/credbroker/credbroker/internal/atomicfile"
)

// checkCertDir checks a certificate directory before credbroker writes into
// it (pair, pairing at start, renewal): a "..data" link that leads outside
// it is refused (exit 2) before a one-time token is spent; a directory that
// group or others may write (a Kubernetes emptyDir is 0777 and cannot be
// changed by a non-root user) is used, with a warning: credbroker's files
// live in 0700 generation directories it creates itself, but others can
// still replace the top-level links.
func checkCertDir(log *slog.Logger, what, dir string) error {
	info, err := atomicfile.Inspect(dir)
	if err != nil {
		return configErrorf("%s %s: %v", what, dir, err)
	}
	if info.Loose {
		log.Warn("certificate directory is writable by group or others; credbroker writes only into 0700 generation directories it creates, but others could replace its links",
			"dir", dir, "mode", info.Mode.String())
	}
	return nil
}
