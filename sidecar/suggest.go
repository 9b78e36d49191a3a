package sidecar

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// didYouMean returns the candidate closest to name by edit distance
// (case-insensitive, - and _ alike), or "" when none is close: at most a
// third of the longer name's letters (and at least one) may differ.
func didYouMean(name string, candidates []string) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	n := norm(name)
	best, bestD := "", -1
	for _, c := range candidates {
		if c == name {
			continue
		}
		d := editDistance(n, norm(c))
		limit := max(len(n), len(c)) / 3
		if limit < 1 {
			limit = 1
		}
		if d <= limit && (bestD < 0 || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes; the names it
// compares are ASCII). Long inputs are cut at 64 bytes: a hostile config
// must not make the suggestion quadratic in its size.
func editDistance(a, b string) int {
	const cut = 64
	if len(a) > cut {
		a = a[:cut]
	}
	if len(b) > cut {
		b = b[:cut]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// hint is the "did you mean" and the list of what exists, for a message
// about an unknown name: `; did you mean "my-xsuaa"? (bindings: a, b)`.
// At most 12 names are listed.
func hint(name, what string, known []string) string {
	var b strings.Builder
	if s := didYouMean(name, known); s != "" {
		fmt.Fprintf(&b, "; did you mean %q?", s)
	}
	if len(known) == 0 {
		fmt.Fprintf(&b, " (there are no %s)", what)
		return b.String()
	}
	list := known
	more := ""
	if len(list) > 12 {
		list, more = list[:12], fmt.Sprintf(", … %d more", len(known)-12)
	}
	fmt.Fprintf(&b, " (%s: %s%s)", what, strings.Join(list, ", "), more)
	return b.String()
}

// unknownKeys walks the YAML tree along the Go type t and reports every
// mapping key the type does not have, with its dotted path, its line, a
// "did you mean" and the keys that exist there. suggested records, for each
// unknown key with a suggestion that is not also present, the path the
// suggestion stands for (a problem there, such as a missing value, is the
// same mistake and is not reported twice).
func unknownKeys(n *yaml.Node, t reflect.Type, path, source string, suggested map[string]bool) ConfigErrors {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		var out ConfigErrors
		for _, c := range n.Content {
			out = append(out, unknownKeys(c, t, path, source, suggested)...)
		}
		return out
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice {
			return nil
		}
		var out ConfigErrors
		for i, c := range n.Content {
			out = append(out, unknownKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), source, suggested)...)
		}
		return out
	case yaml.MappingNode:
		if t.Kind() != reflect.Struct {
			return nil
		}
		fields := configKeys(t)
		known := make([]string, 0, len(fields))
		for k := range fields {
			known = append(known, k)
		}
		sort.Strings(known)
		present := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			present[n.Content[i].Value] = true
		}
		var out ConfigErrors
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + p
			}
			if k.Tag == "!!merge" {
				continue // "<<: *anchor": the anchor's keys are checked where it is defined
			}
			ft, ok := fields[k.Value]
			if !ok {
				if k.Kind != yaml.ScalarNode {
					continue // a complex key: yaml.v3's own error names it
				}
				name := k.Value
				if len(name) > 64 {
					name = name[:64] + "…"
				}
				msg := fmt.Sprintf("not a key of %s (its keys: %s)", orTop(path), strings.Join(known, ", "))
				s := didYouMean(k.Value, known)
				if s != "" {
					msg = fmt.Sprintf("did you mean %q?", s)
					sp := s
					if path != "" {
						sp = path + "." + s
					}
					if !present[s] {
						suggested[sp] = true
					}
				}
				field := name
				if path != "" {
					field = path + "." + name
				}
				out = append(out, &ConfigError{Source: source, Line: k.Line, Field: field,
					Err: fmt.Errorf("%w: %s", ErrUnknownKey, msg)})
				continue
			}
			out = append(out, unknownKeys(v, ft, p, source, suggested)...)
		}
		return out
	}
	return nil
}

func orTop(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

// configKeys maps the yaml keys of struct type t to their types.
func configKeys(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}
