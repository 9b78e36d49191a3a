package sidecar

import (
	"fmt"
	"reflect"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// syntaxError is malformed YAML. The library's message names the line; it
// is passed on as it is (it describes the text, never quotes it).
func syntaxError(source string, err error) ConfigErrors {
	return ConfigErrors{{Source: source, Err: fmt.Errorf("%w: %v", ErrConfigSyntax, err)}}
}

var yamlDurationType = reflect.TypeOf(time.Duration(0))

// valueErrors walks the YAML tree beside the type it decodes into and
// returns a ConfigError for every value of the wrong type, with the line
// and the key path taken from the node (yaml.v3's TypeError holds only
// text). The value itself is never quoted (a secret pasted into the wrong
// key must not reach the log); a duration without a unit shows the fix.
func valueErrors(n *yaml.Node, t reflect.Type, path, source string) ConfigErrors {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	var out ConfigErrors
	switch {
	case n.Kind == yaml.DocumentNode:
		for _, c := range n.Content {
			out = append(out, valueErrors(c, t, path, source)...)
		}
		return out
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := configKeys(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok || k.Tag == "!!merge" {
				continue // unknown keys are unknownKeys'; merged keys are checked where the anchor stands
			}
			out = append(out, valueErrors(n.Content[i+1], ft, keyPath(path, k.Value), source)...)
		}
		return out
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if err := k.Decode(reflect.New(t.Key()).Interface()); err != nil {
				out = append(out, wrongType(k, t.Key(), path, source))
				continue
			}
			out = append(out, valueErrors(n.Content[i+1], t.Elem(), keyPath(path, k.Value), source)...)
		}
		return out
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i, c := range n.Content {
			out = append(out, valueErrors(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), source)...)
		}
		return out
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		return ConfigErrors{wrongType(n, t, path, source)}
	}
	return nil
}

// wrongType describes a node that does not decode into t by its kind and
// tag only.
func wrongType(n *yaml.Node, t reflect.Type, path, source string) *ConfigError {
	if t == yamlDurationType && n.Kind == yaml.ScalarNode {
		want := "want a duration with a unit, such as 20s or 1m30s"
		if _, err := strconv.ParseFloat(n.Value, 64); err == nil {
			want = fmt.Sprintf("want a duration with a unit: %ss, not %s", n.Value, n.Value)
		}
		return &ConfigError{Source: source, Line: n.Line, Field: path, Err: fmt.Errorf("%w: %s", ErrInvalidValue, want)}
	}
	what := n.ShortTag()
	if n.Kind == yaml.ScalarNode {
		what += " value"
	}
	return &ConfigError{Source: source, Line: n.Line, Field: path, Err: fmt.Errorf("%w: cannot unmarshal %s into %s", ErrInvalidValue, what, t)}
}

func keyPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
