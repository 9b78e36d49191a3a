// Package inputfile reads the small files credbroker is pointed at by a flag
// or a config key (CA bundles, token URLs, assertions, passwords, the config
// file): regular files only, and no larger than MaxSize. It is the one home
// of that rule for every command.
package inputfile

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxSize bounds the files Read accepts.
const MaxSize = 4 << 20

var (
	// ErrNotRegular is the error of a path that names a FIFO, a device or a
	// socket.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge is the error of a file larger than MaxSize.
	ErrTooLarge = fmt.Errorf("larger than %d bytes", MaxSize)
)

// Read reads a file named by a flag or a config key. It refuses anything
// but a regular file before opening it — opening a FIFO blocks until a
// writer appears, and not even SIGTERM ends that wait — and files larger
// than MaxSize. Errors are *os.PathError, like os.ReadFile's.
func Read(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		op := "read"
		if fi.IsDir() {
			return nil, &os.PathError{Op: op, Path: path, Err: errors.New("is a directory")}
		}
		return nil, &os.PathError{Op: op, Path: path, Err: ErrNotRegular}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, &os.PathError{Op: "read", Path: path, Err: ErrTooLarge}
	}
	return b, nil
}
