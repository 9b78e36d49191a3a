package sidecar

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// configSchemaPath is the JSON Schema of the config file that editors use
// (docs/configuration.md says how).
const configSchemaPath = "../docs/config.schema.json"

// TestConfigSchemaMatchesTypes walks the yaml tags of Config recursively and
// the schema's properties, both ways: a key the Go types accept must be in
// the schema with a matching type, and a key of the schema must exist in
// the types. UPDATE_CONFIG_SCHEMA=1 regenerates the file from the types and
// their doc comments.
func TestConfigSchemaMatchesTypes(t *testing.T) {
	g := NewWithT(t)
	if os.Getenv("UPDATE_CONFIG_SCHEMA") == "1" {
		s := schemaFor(reflect.TypeOf(Config{}), fieldDocs(t))
		s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
		s["$id"] = "https://github.com/credbroker/credbroker/docs/config.schema.json"
		s["title"] = "credbroker run configuration"
		s["description"] = "The YAML file of `credbroker run --config`. Generated from the Go types of sidecar.Config by UPDATE_CONFIG_SCHEMA=1 go test -run TestConfigSchemaMatchesTypes ./sidecar; see docs/configuration.md."
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		g.Expect(enc.Encode(s)).To(Succeed())
		g.Expect(os.WriteFile(configSchemaPath, b.Bytes(), 0o644)).To(Succeed())
	}
	raw, err := os.ReadFile(configSchemaPath)
	g.Expect(err).NotTo(HaveOccurred(), "docs/config.schema.json is missing")
	var schema map[string]any
	g.Expect(json.Unmarshal(raw, &schema)).To(Succeed())
	for _, p := range compareSchema(reflect.TypeOf(Config{}), schema, "") {
		t.Error(p)
	}
}

var durationType = reflect.TypeOf(time.Duration(0))

// compareSchema lists every difference between type t and schema s.
func compareSchema(t reflect.Type, s map[string]any, path string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	name := path
	if name == "" {
		name = "(top level)"
	}
	want := ""
	switch {
	case t == durationType:
		want = "string"
	case t.Kind() == reflect.String:
		want = "string"
	case t.Kind() == reflect.Bool:
		want = "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		want = "integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		want = "number"
	case t.Kind() == reflect.Slice:
		want = "array"
	case t.Kind() == reflect.Struct:
		want = "object"
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		if got, _ := s["type"].(string); got != "object" {
			return []string{name + ": schema type " + got + ", Go type " + t.String() + " wants object"}
		}
		vs, ok := s["additionalProperties"].(map[string]any)
		if !ok {
			return []string{name + ": a map without additionalProperties"}
		}
		return compareSchema(t.Elem(), vs, path+".*")
	default:
		return []string{name + ": no schema type for Go type " + t.String()}
	}
	if got, _ := s["type"].(string); got != want {
		return []string{name + ": schema type " + got + ", Go type " + t.String() + " wants " + want}
	}
	var out []string
	switch want {
	case "array":
		items, ok := s["items"].(map[string]any)
		if !ok {
			return []string{name + ": an array without items"}
		}
		out = append(out, compareSchema(t.Elem(), items, path+"[]")...)
	case "object":
		if s["additionalProperties"] != false {
			out = append(out, name+": additionalProperties must be false (unknown keys are errors)")
		}
		props, _ := s["properties"].(map[string]any)
		keys := yamlFields(t)
		for k, ft := range keys {
			ps, ok := props[k].(map[string]any)
			if !ok {
				out = append(out, join(path, k)+": in the Go types, missing from the schema")
				continue
			}
			out = append(out, compareSchema(ft, ps, join(path, k))...)
		}
		for k := range props {
			if _, ok := keys[k]; !ok {
				out = append(out, join(path, k)+": in the schema, not in the Go types")
			}
		}
	}
	sort.Strings(out)
	return out
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// yamlFields maps the yaml keys of struct t to their types (inline structs
// flattened, "-" skipped).
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// schemaFor generates the schema of t; docs are the doc comments of struct
// fields by "Type.Field".
func schemaFor(t reflect.Type, docs map[string]string) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
	case t.Kind() == reflect.String:
		return map[string]any{"type": "string"}
	case t.Kind() == reflect.Bool:
		return map[string]any{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return map[string]any{"type": "integer"}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return map[string]any{"type": "number"}
	case t.Kind() == reflect.Slice:
		return map[string]any{"type": "array", "items": schemaFor(t.Elem(), docs)}
	case t.Kind() == reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaFor(t.Elem(), docs)}
	}
	props := map[string]any{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		p := schemaFor(f.Type, docs)
		if d := docs[t.Name()+"."+f.Name]; d != "" {
			if rest, ok := strings.CutPrefix(d, f.Name+" "); ok {
				d = name + " " + rest // the key, not the Go field
			}
			p["description"] = d
		}
		props[name] = p
	}
	return map[string]any{"type": "object", "additionalProperties": false, "properties": props}
}

// fieldDocs reads the doc comments of the struct fields of package sidecar
// and sidecar/guard.
func fieldDocs(t *testing.T) map[string]string {
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, dir := range []string{".", "guard"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, fn := range files {
			if strings.HasSuffix(fn, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, fn, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok {
					return true
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					return true
				}
				for _, fld := range st.Fields.List {
					doc := fld.Doc.Text()
					if doc == "" {
						doc = fld.Comment.Text()
					}
					for _, nm := range fld.Names {
						out[ts.Name.Name+"."+nm.Name] = strings.Join(strings.Fields(doc), " ")
					}
				}
				return true
			})
		}
	}
	return out
}
