package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// maxInputFile bounds the small files commands read from flags (CA bundles,
// token URLs, assertions, passwords).
const maxInputFile = 4 << 20

var (
	errNotRegular = errors.New("not a regular file")
	errTooLarge   = fmt.Errorf("larger than %d bytes", maxInputFile)
)

// readInputFile reads a file named by a flag. It refuses anything but a
// regular file before opening it — opening a FIFO blocks until a writer
// appears, and not even SIGTERM ends that wait — and files larger than
// maxInputFile. Errors are *os.PathError, like os.ReadFile's.
func readInputFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		op := "read"
		if fi.IsDir() {
			return nil, &os.PathError{Op: op, Path: path, Err: errors.New("is a directory")}
		}
		return nil, &os.PathError{Op: op, Path: path, Err: errNotRegular}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInputFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInputFile {
		return nil, &os.PathError{Op: "read", Path: path, Err: errTooLarge}
	}
	return b, nil
}
