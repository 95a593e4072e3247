// Package registry holds the inventory of APIs: their metadata from config
// and the operations their OpenAPI documents declare.
package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxSpecBytes bounds one OpenAPI document.
const MaxSpecBytes = 16 << 20

// Spec is what routing needs from an OpenAPI 3.0/3.1 document.
type Spec struct {
	File       string
	Version    string // the document's openapi field
	Title      string
	Digest     string // hex SHA-256 of the file bytes
	Operations []Operation
}

// Operation is one method on one path template of a spec.
type Operation struct {
	ID     string // operationId
	Method string // upper case
	Path   string // the spec's path template, e.g. /orders/{orderId}
	Line   int    // where the operation is declared in the spec
}

// SpecError is one problem in a spec, with its position.
type SpecError struct {
	File string
	Line int
	Msg  string
}

func (e SpecError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// SpecErrors lists every problem found in a spec.
type SpecErrors []SpecError

func (es SpecErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

var httpMethods = map[string]bool{
	"get": true, "put": true, "post": true, "delete": true,
	"options": true, "head": true, "patch": true, "trace": true,
}

// pathItemKeys are the non-operation keys a path item may hold.
var pathItemKeys = map[string]bool{
	"$ref": true, "summary": true, "description": true, "servers": true, "parameters": true,
}

var openapiVersion = regexp.MustCompile(`^3\.(0|1)\.\d+$`)

// LoadSpec reads and checks an OpenAPI document from file. Errors are
// SpecErrors naming the spec's own file and line.
func LoadSpec(file string) (*Spec, error) {
	f, err := os.Open(file)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, SpecErrors{{File: file, Msg: "cannot read OpenAPI spec: " + err.Error()}}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSpecBytes+1))
	if err != nil {
		return nil, SpecErrors{{File: file, Msg: "cannot read OpenAPI spec: " + err.Error()}}
	}
	if len(data) > MaxSpecBytes {
		return nil, SpecErrors{{File: file, Msg: fmt.Sprintf("OpenAPI spec larger than %d bytes", MaxSpecBytes)}}
	}
	return ParseSpec(file, data)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// ParseSpec parses an OpenAPI document (YAML or JSON).
func ParseSpec(file string, data []byte) (*Spec, error) {
	sum := sha256.Sum256(data)
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, SpecErrors{{File: file, Msg: "OpenAPI spec is empty"}}
		}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, SpecErrors{{File: file, Line: line, Msg: "invalid YAML/JSON: " + m[2]}}
		}
		return nil, SpecErrors{{File: file, Msg: "invalid YAML/JSON: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	var errs SpecErrors
	fail := func(line int, format string, args ...any) {
		errs = append(errs, SpecError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if root.Kind != yaml.MappingNode {
		fail(root.Line, "an OpenAPI document is a mapping at the top level")
		return nil, errs
	}
	spec := &Spec{File: file, Digest: hex.EncodeToString(sum[:])}
	ver := mapGet(root, "openapi")
	switch {
	case ver == nil:
		fail(root.Line, "missing openapi: version field (3.0.x or 3.1.x; Swagger 2.0 is not supported)")
	case !openapiVersion.MatchString(ver.Value):
		fail(ver.Line, "unsupported openapi version %q (want 3.0.x or 3.1.x)", ver.Value)
	default:
		spec.Version = ver.Value
	}
	if info := mapGet(root, "info"); info != nil {
		if t := mapGet(info, "title"); t != nil {
			spec.Title = t.Value
		}
	}
	paths := mapGet(root, "paths")
	if paths == nil {
		fail(root.Line, "missing paths: the spec declares no operations")
		return nil, errs
	}
	if paths.Kind != yaml.MappingNode {
		fail(paths.Line, "paths must be a mapping")
		return nil, errs
	}
	ids := map[string]int{}
	for i := 0; i+1 < len(paths.Content); i += 2 {
		k, item := paths.Content[i], paths.Content[i+1]
		p := k.Value
		if strings.HasPrefix(p, "x-") {
			continue
		}
		if !strings.HasPrefix(p, "/") {
			fail(k.Line, "path %q must start with /", p)
			continue
		}
		if item.Kind != yaml.MappingNode {
			fail(item.Line, "path item %q must be a mapping", p)
			continue
		}
		for j := 0; j+1 < len(item.Content); j += 2 {
			mk, op := item.Content[j], item.Content[j+1]
			m := mk.Value
			if pathItemKeys[m] || strings.HasPrefix(m, "x-") {
				if m == "$ref" {
					fail(mk.Line, "path item $ref is not supported; inline the path item")
				}
				continue
			}
			if !httpMethods[m] {
				fail(mk.Line, "unknown key %q in path item %s (methods are lower case: get, post, ...)", m, p)
				continue
			}
			if op.Kind != yaml.MappingNode {
				fail(op.Line, "operation %s %s must be a mapping", strings.ToUpper(m), p)
				continue
			}
			idn := mapGet(op, "operationId")
			if idn == nil || idn.Value == "" {
				fail(mk.Line, "operation %s %s has no operationId; every operation needs one so policy can name it", strings.ToUpper(m), p)
				continue
			}
			if prev, dup := ids[idn.Value]; dup {
				fail(idn.Line, "operationId %q is already used at line %d", idn.Value, prev)
				continue
			}
			ids[idn.Value] = idn.Line
			spec.Operations = append(spec.Operations, Operation{ID: idn.Value, Method: strings.ToUpper(m), Path: p, Line: mk.Line})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	sort.SliceStable(spec.Operations, func(i, j int) bool { return spec.Operations[i].Line < spec.Operations[j].Line })
	return spec, nil
}

func mapGet(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
