package vcap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// maxFileSize bounds every file vcap reads (bindings are small).
const maxFileSize = 4 << 20

func readFileLimited(path string) ([]byte, error) {
	// Refuse anything but a regular file before opening it: opening a FIFO
	// blocks until a writer appears, and nothing (not even SIGTERM) would
	// end the wait.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnreadable, pathErr(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file (%s)", ErrUnreadable, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnreadable, pathErr(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnreadable, pathErr(err))
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrUnreadable, maxFileSize)
	}
	return b, nil
}

// pathErr drops the path from *os.PathError (the caller names the source).
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// LoadFile reads a file holding VCAP_SERVICES JSON (--vcap-file,
// VCAP_SERVICES_FILE_PATH). Bindings get Source "file <path>".
func LoadFile(ctx context.Context, path string, opts ...Option) (*Set, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	src := "file " + path
	b, err := readFileLimited(path)
	if err != nil {
		return nil, &Error{Source: src, Err: err}
	}
	set, err := ParseVCAP(b, src, opts...)
	if err != nil {
		return nil, err
	}
	for _, x := range set.Bindings {
		x.Path = path
	}
	return set, nil
}

// vcapEntry is one element of a VCAP_SERVICES label array.
type vcapEntry struct {
	Name         *string         `json:"name"`
	Label        string          `json:"label"`
	Plan         string          `json:"plan"`
	Tags         []string        `json:"tags"`
	InstanceName string          `json:"instance_name"`
	InstanceGUID string          `json:"instance_guid"`
	Provider     *string         `json:"provider"`
	Credentials  json.RawMessage `json:"credentials"`
}

// ParseVCAP parses VCAP_SERVICES JSON: an object mapping service labels to
// arrays of bindings. source names the input in Binding.Source and errors
// ("VCAP_SERVICES", "file /x/vcap.json"). VCAP_APPLICATION is not needed.
//
// Malformed JSON is an *Error with the byte offset (ErrMalformed). A binding
// that cannot be decoded, has no credentials or carries unusable credentials
// is kept with Problems, so the other bindings stay usable.
func ParseVCAP(data []byte, source string, opts ...Option) (*Set, error) {
	cfg := newConfig(opts)
	if cfg.keyErr != nil {
		return nil, cfg.keyErr
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &Error{Source: source, Err: fmt.Errorf("%w: empty", ErrMalformed)}
	}
	var top map[string]json.RawMessage
	if err := decodeStrict(data, &top); err != nil {
		return nil, jsonError(source, "", "", data, err)
	}
	if top == nil {
		return nil, &Error{Source: source, Err: fmt.Errorf("%w: want a JSON object of service labels", ErrMalformed)}
	}
	labels := make([]string, 0, len(top))
	for l := range top {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	set := &Set{Source: source}
	for _, label := range labels {
		var entries []json.RawMessage
		if err := json.Unmarshal(top[label], &entries); err != nil {
			return nil, &Error{Source: source, Field: label, Err: fmt.Errorf("%w: service %q: want an array of bindings", ErrMalformed, label)}
		}
		for i, raw := range entries {
			set.Bindings = append(set.Bindings, parseVCAPEntry(cfg, source, label, i, raw))
		}
	}
	finishSet(cfg, set)
	return set, nil
}

func parseVCAPEntry(cfg *config, source, label string, i int, raw json.RawMessage) *Binding {
	b := &Binding{Source: source, Label: label, Type: label}
	var e vcapEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		b.Name = fmt.Sprintf("%s[%d]", label, i)
		b.addProblem("", fmt.Errorf("%w: %s", ErrMalformed, jsonMsg(err)))
		return b
	}
	if e.Name != nil && *e.Name != "" {
		b.Name = *e.Name
	} else if e.InstanceName != "" {
		b.Name = e.InstanceName
	} else {
		b.Name = fmt.Sprintf("%s[%d]", label, i)
	}
	if e.Label != "" {
		b.Label = e.Label
	}
	b.Plan, b.Tags, b.InstanceName, b.InstanceGUID = e.Plan, e.Tags, e.InstanceName, e.InstanceGUID
	if e.Provider != nil {
		b.Provider = *e.Provider
	}
	if len(e.Credentials) == 0 || string(e.Credentials) == "null" {
		b.addProblem("credentials", ErrNoCredentials)
		return b
	}
	var creds map[string]any
	if err := decodeStrict(e.Credentials, &creds); err != nil || creds == nil {
		b.addProblem("credentials", fmt.Errorf("%w: want a JSON object", ErrMalformed))
		return b
	}
	b.Credentials = NewCredentials(creds)
	return b
}

// decodeStrict decodes one JSON value with numbers kept as json.Number and
// rejects trailing data.
func decodeStrict(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	end := d.InputOffset()
	if _, err := d.Token(); err != io.EOF {
		rest := data[end:]
		return &trailingError{off: end + int64(len(rest)-len(bytes.TrimLeft(rest, " \t\r\n")))}
	}
	return nil
}

type trailingError struct{ off int64 }

func (t *trailingError) Error() string { return "data after the JSON value" }

// jsonError turns a decoding error into an *Error with the byte offset. The
// message never quotes the input (it may hold secrets).
func jsonError(source, binding, field string, data []byte, err error) *Error {
	e := &Error{Source: source, Binding: binding, Field: field}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var tr *trailingError
	switch {
	case errors.As(err, &se):
		e.Offset, e.HasOffset = se.Offset, true
		// encoding/json's syntax messages quote at most the one offending
		// character, never a value.
		e.Err = fmt.Errorf("%w: %s", ErrMalformed, se.Error())
	case errors.As(err, &te):
		e.Offset, e.HasOffset = te.Offset, true
		e.Err = fmt.Errorf("%w: %s is a JSON %s, want %s", ErrMalformed, orTop(te.Field), te.Value, te.Type.Kind())
	case errors.As(err, &tr):
		e.Offset, e.HasOffset = tr.off, true
		e.Err = fmt.Errorf("%w: data after the JSON value", ErrMalformed)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		e.Offset, e.HasOffset = int64(len(data)), true
		e.Err = fmt.Errorf("%w: unexpected end of JSON input", ErrMalformed)
	default:
		e.Err = fmt.Errorf("%w: %s", ErrMalformed, jsonMsg(err))
	}
	return e
}

func orTop(f string) string {
	if f == "" {
		return "the top level"
	}
	return fmt.Sprintf("%q", f)
}

// jsonMsg reports only the kind of failure, not the input.
func jsonMsg(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("%s (byte %d)", se.Error(), se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s is a JSON %s, want %s", orTop(te.Field), te.Value, te.Type.Kind())
	}
	return "invalid JSON"
}
