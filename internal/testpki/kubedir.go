package testpki

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
)

var generation atomic.Int64

// WriteKubernetesDir lays out files the way the kubelet's atomic writer
// mounts a Secret or ConfigMap volume:
//
//	dir/..2026_11_23_18_00_00.000000001/<name>   the real files
//	dir/..data -> ..2026_...                     one symlink, swapped atomically
//	dir/<name> -> ..data/<name>                  one symlink per key
//
// Calling it again on the same dir is a rotation: the new files go into a
// fresh timestamped directory, "..data" is replaced with a rename (one
// atomic step, as the kubelet does), keys that disappeared lose their
// symlink, and the old directory is removed.
func WriteKubernetesDir(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gen := fmt.Sprintf("..2026_01_01_00_00_00.%09d", generation.Add(1))
	genDir := filepath.Join(dir, gen)
	if err := os.Mkdir(genDir, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(genDir, name), data, 0o600); err != nil {
			return err
		}
		names = append(names, name)
	}
	sort.Strings(names)
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(gen, tmpLink); err != nil {
		return err
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for _, name := range names {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	if old != "" && old != gen {
		// Drop symlinks for keys that are gone, then the old generation.
		entries, _ := os.ReadDir(filepath.Join(dir, old))
		for _, e := range entries {
			if _, still := files[e.Name()]; !still {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			return err
		}
	}
	return nil
}
