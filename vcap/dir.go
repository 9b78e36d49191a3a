package vcap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LoadDir reads a service-binding root (SERVICE_BINDING_ROOT, --bindings-dir):
// one directory per binding, named after the binding. Each directory is read
// in the first layout that fits:
//
//  1. SAP BTP service-operator with ".metadata": metaDataProperties and
//     credentialProperties name the files (sourceName, default the name) and
//     their format ("text" or "json"); a credential property with
//     "container": true is a JSON object whose keys are the credentials.
//  2. One JSON blob: the directory holds exactly one non-empty file and it is
//     a JSON object (service-operator secretKey layout, SAP's Go library's
//     "credentials" file). Its "credentials" object, when present, holds the
//     credentials; else every key except the metadata keys does.
//  3. servicebinding.io: one file per entry; "type", "provider" and the
//     metadata names label, plan, tags, instance_name, instance_guid are
//     metadata, every other file is a credential.
//
// Entries whose name starts with "." (Kubernetes "..data" and generation
// directories, ".metadata") are never credentials; files are read through
// their symlinks, so a Kubernetes "..data" mount reads like a plain one.
// Bindings get Source "dir <root>/<name>" and are sorted by name.
func LoadDir(ctx context.Context, root string, opts ...Option) (*Set, error) {
	cfg := newConfig(opts)
	if cfg.keyErr != nil {
		return nil, cfg.keyErr
	}
	src := "dir " + root
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, &Error{Source: src, Err: fmt.Errorf("%w: %v", ErrUnreadable, pathErr(err))}
	}
	set := &Set{Source: src}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := filepath.Join(root, name)
		fi, err := os.Stat(p) // follows symlinks
		if err != nil {
			b := &Binding{Name: name, Source: "dir " + p}
			b.addProblem("", fmt.Errorf("%w: %v", ErrUnreadable, pathErr(err)))
			set.Bindings = append(set.Bindings, b)
			continue
		}
		if !fi.IsDir() {
			continue // stray files at the root are not bindings
		}
		set.Bindings = append(set.Bindings, readBindingDir(p, name))
	}
	finishSet(cfg, set)
	return set, nil
}

// metadataKeys are entries that describe the binding rather than its credentials.
var metadataKeys = map[string]bool{
	"type": true, "provider": true, "label": true, "plan": true, "tags": true,
	"instance_name": true, "instance_guid": true, "name": true,
}

func readBindingDir(dir, name string) *Binding {
	b := &Binding{Name: name, Source: "dir " + dir, Path: dir}
	files, err := listFiles(dir)
	if err != nil {
		b.addProblem("", fmt.Errorf("%w: %v", ErrUnreadable, pathErr(err)))
		return b
	}
	if _, err := os.Stat(filepath.Join(dir, ".metadata")); err == nil {
		readMetadataLayout(b, dir)
		addKeyFile(b, dir)
		return b
	}
	if blob, ok := singleJSONBlob(dir, files); ok {
		readBlob(b, blob)
		addKeyFile(b, dir)
		b.viaDir = true
		return b
	}
	creds := map[string]any{}
	for _, f := range files {
		data, err := readFileLimited(filepath.Join(dir, f))
		if err != nil {
			b.addProblem(f, err)
			continue
		}
		v := strings.TrimRight(string(data), "\r\n")
		if metadataKeys[f] {
			setMeta(b, f, v)
			continue
		}
		creds[f] = v
	}
	if b.Label == "" {
		b.Label = b.Type
	}
	b.Credentials = NewCredentials(creds)
	b.viaDir = true
	return b
}

// keyFileName is the file a self-managed X.509 binding's key may be mounted
// as, next to the binding's other files.
const keyFileName = "key"

// addKeyFile adds the "key" file of dir to the credentials when the layout
// did not already provide a "key" (the .metadata and blob layouts do not
// list it).
func addKeyFile(b *Binding, dir string) {
	if b.Credentials.Has("key") || len(b.errs) > 0 {
		return
	}
	p := filepath.Join(dir, keyFileName)
	if _, err := os.Stat(p); err != nil {
		return
	}
	data, err := readFileLimited(p)
	if err != nil {
		b.addProblem(keyFileName, err)
		return
	}
	m := b.Credentials.Reveal()
	m["key"] = string(data)
	b.Credentials = NewCredentials(m)
}

// listFiles returns the regular files of dir (through symlinks), without dot-entries.
func listFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}

// singleJSONBlob returns the JSON object when dir has exactly one non-empty
// file and it holds a JSON object.
func singleJSONBlob(dir string, files []string) (map[string]any, bool) {
	var only string
	for _, f := range files {
		if f == keyFileName {
			continue // a self-managed key next to the blob
		}
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Size() == 0 {
			continue
		}
		if only != "" {
			return nil, false
		}
		only = f
	}
	if only == "" {
		return nil, false
	}
	data, err := readFileLimited(filepath.Join(dir, only))
	if err != nil || !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		return nil, false
	}
	var m map[string]any
	if decodeStrict(data, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

func readBlob(b *Binding, m map[string]any) {
	creds := map[string]any{}
	inner, hasInner := m["credentials"].(map[string]any)
	for k, v := range m {
		if metadataKeys[k] {
			setMetaValue(b, k, v)
			continue
		}
		if hasInner && k == "credentials" {
			continue
		}
		if !hasInner {
			creds[k] = v
		}
	}
	if hasInner {
		creds = inner
	}
	if b.Label == "" {
		b.Label = b.Type
	}
	b.Credentials = NewCredentials(creds)
}

func setMetaValue(b *Binding, k string, v any) {
	switch v := v.(type) {
	case string:
		setMeta(b, k, v)
	case []any:
		if k == "tags" {
			for _, x := range v {
				if s, ok := x.(string); ok {
					b.Tags = append(b.Tags, s)
				}
			}
		}
	}
}

func setMeta(b *Binding, k, v string) {
	v = strings.TrimSpace(v)
	switch k {
	case "type":
		b.Type = v
	case "provider":
		b.Provider = v
	case "label":
		b.Label = v
	case "plan":
		b.Plan = v
	case "instance_name":
		b.InstanceName = v
	case "instance_guid":
		b.InstanceGUID = v
	case "tags":
		b.Tags = parseTags(v)
	}
}

func parseTags(v string) []string {
	if strings.HasPrefix(v, "[") {
		var out []string
		if json.Unmarshal([]byte(v), &out) == nil {
			return out
		}
	}
	var out []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// metadataFile is the service operator's ".metadata".
type metadataFile struct {
	MetaDataProperties   []metaProp `json:"metaDataProperties"`
	CredentialProperties []metaProp `json:"credentialProperties"`
}

type metaProp struct {
	Name       string `json:"name"`
	SourceName string `json:"sourceName"`
	Format     string `json:"format"`
	Container  bool   `json:"container"`
}

func readMetadataLayout(b *Binding, dir string) {
	b.viaMetadata = true
	data, err := readFileLimited(filepath.Join(dir, ".metadata"))
	if err != nil {
		b.addProblem(".metadata", err)
		return
	}
	var md metadataFile
	if err := decodeStrict(data, &md); err != nil {
		e := jsonError(b.Source, b.Name, ".metadata", data, err)
		b.errs = append(b.errs, e)
		b.Problems = append(b.Problems, e.detail()+offsetNote(e))
		return
	}
	for _, p := range md.MetaDataProperties {
		v, ok := readProp(b, dir, p)
		if !ok {
			continue
		}
		setMetaValue(b, p.Name, v)
	}
	if b.Label == "" {
		b.Label = b.Type
	}
	creds := map[string]any{}
	for _, p := range md.CredentialProperties {
		v, ok := readProp(b, dir, p)
		if !ok {
			continue
		}
		if p.Container {
			m, isObj := v.(map[string]any)
			if !isObj {
				b.addProblem(p.src(), fmt.Errorf("%w: container credentials must be a JSON object", ErrMalformed))
				continue
			}
			for k, x := range m {
				creds[k] = x
			}
			continue
		}
		creds[p.Name] = v
	}
	b.Credentials = NewCredentials(creds)
}

func offsetNote(e *Error) string {
	if !e.HasOffset {
		return ""
	}
	return fmt.Sprintf(" (byte %d)", e.Offset)
}

func (p metaProp) src() string {
	if p.SourceName != "" {
		return p.SourceName
	}
	return p.Name
}

// readProp reads one property file: text (trimmed of the final newline) or
// JSON (decoded). A missing or malformed file is a problem.
func readProp(b *Binding, dir string, p metaProp) (any, bool) {
	if p.Name == "" {
		b.addProblem(".metadata", fmt.Errorf("%w: a property without \"name\"", ErrMalformed))
		return nil, false
	}
	f := p.src()
	if strings.Contains(f, "/") || strings.HasPrefix(f, ".") {
		b.addProblem(".metadata", fmt.Errorf("%w: property %q names file %q outside the binding", ErrMalformed, p.Name, f))
		return nil, false
	}
	data, err := readFileLimited(filepath.Join(dir, f))
	if err != nil {
		b.addProblem(f, err)
		return nil, false
	}
	switch strings.ToLower(p.Format) {
	case "", "text":
		return strings.TrimRight(string(data), "\r\n"), true
	case "json":
		var v any
		if err := decodeStrict(data, &v); err != nil {
			e := jsonError(b.Source, b.Name, f, data, err)
			b.errs = append(b.errs, e)
			b.Problems = append(b.Problems, e.detail()+offsetNote(e))
			return nil, false
		}
		return v, true
	default:
		b.addProblem(".metadata", fmt.Errorf("%w: property %q has format %q, want text or json", ErrMalformed, p.Name, p.Format))
		return nil, false
	}
}
