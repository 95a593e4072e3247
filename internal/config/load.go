package config

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed schema.json
var schemaJSON []byte

// Schema returns the JSON Schema that every config must satisfy.
func Schema() []byte { return bytes.Clone(schemaJSON) }

// MaxFileBytes bounds one config file; a config is written by people, so
// anything larger is a mistake (or an attack on the parser).
const MaxFileBytes = 4 << 20

// Loaded is a config that passed loading and validation, with the positions
// of its values for later error messages and any warnings found.
type Loaded struct {
	Config   *Config
	Sources  Sources
	Warnings Problems
	// Partial is set when Load failed: Config holds what could be decoded
	// and must not be served.
	Partial bool
}

// LookupEnv resolves ${NAME} references. os.LookupEnv in production.
type LookupEnv func(name string) (string, bool)

// Load reads path (a YAML file, or a folder whose *.yaml and *.yml files are
// merged in name order), substitutes ${ENV} references, validates it against
// the schema and the semantic rules, applies defaults, and resolves relative
// file paths against the file that names them. On failure the error is
// Problems, listing every problem found, and the returned Loaded (if not
// nil) is Partial.
func Load(path string, env LookupEnv) (*Loaded, error) {
	if env == nil {
		env = os.LookupEnv
	}
	files, err := configFiles(path)
	if err != nil {
		return nil, Problems{{File: path, Message: err.Error()}}
	}
	var parsed []parsedFile
	var probs Problems
	for _, f := range files {
		pf, err := parseFile(f)
		if err != nil {
			var ps Problems
			if errors.As(err, &ps) {
				probs = append(probs, ps...)
			} else {
				probs = append(probs, Problem{File: f, Message: err.Error()})
			}
			continue
		}
		parsed = append(parsed, pf)
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return LoadParsed(parsed, env)
}

// LoadBytes loads a single config given as bytes; name is used in messages
// and as the base for relative paths.
func LoadBytes(name string, data []byte, env LookupEnv) (*Loaded, error) {
	if env == nil {
		env = os.LookupEnv
	}
	pf, err := parseBytes(name, data)
	if err != nil {
		return nil, err
	}
	return LoadParsed([]parsedFile{pf}, env)
}

type parsedFile struct {
	name string
	root *yaml.Node // the document's top mapping
}

func configFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config: %w", unwrapPathError(err))
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("cannot list config folder: %w", unwrapPathError(err))
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") {
			continue
		}
		if strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml") {
			files = append(files, filepath.Join(path, n))
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, errors.New("config folder holds no .yaml or .yml file")
	}
	return files, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func parseFile(name string) (parsedFile, error) {
	f, err := os.Open(name)
	if err != nil {
		return parsedFile{}, fmt.Errorf("cannot read config: %w", unwrapPathError(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return parsedFile{}, fmt.Errorf("cannot read config: %w", err)
	}
	if len(data) > MaxFileBytes {
		return parsedFile{}, fmt.Errorf("config file larger than %d bytes", MaxFileBytes)
	}
	return parseBytes(name, data)
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parseBytes(name string, data []byte) (parsedFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return parsedFile{}, Problems{{File: name, Message: "config file is empty (it needs at least version: 1)"}}
		}
		return parsedFile{}, Problems{yamlProblem(name, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return parsedFile{}, Problems{yamlProblem(name, err)}
		}
		return parsedFile{}, Problems{{File: name, Line: line, Message: "more than one YAML document in a file is not supported; use one file per document"}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return parsedFile{}, Problems{{File: name, Line: root.Line, Message: "config must be a YAML mapping (key: value pairs) at the top level"}}
	}
	return parsedFile{name: name, root: root}, nil
}

func yamlProblem(name string, err error) Problem {
	msg := err.Error()
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: name, Line: line, Message: "invalid YAML: " + m[2]}
	}
	return Problem{File: name, Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// listKeys are the top-level keys whose lists are concatenated across the
// files of a config folder; every other key may be set in one file only.
var listKeys = map[string]bool{"apis": true}

// LoadParsed merges parsed files and validates the result.
func LoadParsed(files []parsedFile, env LookupEnv) (*Loaded, error) {
	merged := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1}
	fileOf := map[*yaml.Node]string{}
	lists := map[string]*yaml.Node{}
	seen := map[string]Pos{}
	var probs Problems
	var names []string
	for _, pf := range files {
		names = append(names, pf.name)
		fileOf[pf.root] = pf.name
		hasVersion := false
		for i := 0; i+1 < len(pf.root.Content); i += 2 {
			k, v := pf.root.Content[i], pf.root.Content[i+1]
			fileOf[k], fileOf[v] = pf.name, pf.name
			if k.Value == "version" {
				hasVersion = true
			}
			if listKeys[k.Value] && v.Kind == yaml.SequenceNode {
				l, ok := lists[k.Value]
				if !ok {
					l = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: v.Line, Column: v.Column}
					lists[k.Value] = l
					fileOf[l] = pf.name
					merged.Content = append(merged.Content, k, l)
				}
				for _, item := range v.Content {
					fileOf[item] = pf.name
					l.Content = append(l.Content, item)
				}
				continue
			}
			if k.Value == "version" && len(files) > 1 {
				if _, ok := seen["version"]; ok {
					// Each file states its version; they must agree, which
					// the schema checks on the first and this on the rest.
					if v.Value != strconv.Itoa(CurrentVersion) {
						probs = append(probs, Problem{File: pf.name, Line: v.Line, Path: "/version", Message: fmt.Sprintf("unsupported config version %q (this build understands %d)", v.Value, CurrentVersion)})
					}
					continue
				}
			}
			if prev, ok := seen[k.Value]; ok {
				msg := fmt.Sprintf("%s is already set in %s:%d; set it in one file only", k.Value, prev.File, prev.Line)
				if prev.File == pf.name {
					msg = fmt.Sprintf("duplicate key %q (first set at line %d)", k.Value, prev.Line)
				}
				probs = append(probs, Problem{File: pf.name, Line: k.Line, Path: "/" + k.Value, Message: msg})
				continue
			}
			seen[k.Value] = Pos{File: pf.name, Line: k.Line}
			merged.Content = append(merged.Content, k, v)
		}
		if !hasVersion {
			probs = append(probs, Problem{File: pf.name, Line: pf.root.Line, Path: "/version", Message: fmt.Sprintf("missing version: every config file starts with version: %d", CurrentVersion)})
		}
	}

	src := Sources{}
	w := walker{src: src, env: env, fileOf: fileOf, secret: map[string]string{}}
	value := w.toValue(merged, "", names[0])
	probs = append(probs, w.probs...)
	probs = append(probs, schemaProblems(value, src, w.secret)...)

	// Decode even when the schema found problems, so the semantic checks
	// below can report theirs too: every problem in one run.
	cfg := &Config{}
	if err := merged.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) || len(probs) == 0 {
			return nil, append(probs, Problem{File: names[0], Message: "cannot decode config: " + err.Error()})
		}
	}
	cfg.Files = names
	cfg.Dir = filepath.Dir(names[0])
	rep := &Reporter{Src: src}
	applyDefaults(cfg, rep)
	validate(cfg, rep)
	for _, p := range rep.Problems {
		if !coveredBy(p.Path, probs) {
			probs = append(probs, p)
		}
	}
	if len(probs.Errors()) > 0 {
		// The partial config goes back with the problems so callers can
		// check what it names (OpenAPI specs) and report everything at once.
		return &Loaded{Config: cfg, Sources: src, Partial: true}, probs
	}
	return &Loaded{Config: cfg, Sources: src, Warnings: probs.Warnings()}, nil
}

// coveredBy reports whether a problem at ptr (or an ancestor or descendant
// of it) was already reported, so one mistake yields one message.
func coveredBy(ptr string, probs Problems) bool {
	for _, p := range probs {
		if p.Warning {
			continue
		}
		if p.Path == ptr || strings.HasPrefix(ptr, p.Path+"/") || strings.HasPrefix(p.Path, ptr+"/") {
			return true
		}
	}
	return false
}

// walker converts YAML nodes to JSON-like values for schema validation,
// substituting ${ENV} references and recording where each value came from.
type walker struct {
	src    Sources
	env    LookupEnv
	fileOf map[*yaml.Node]string
	probs  Problems
	// secret maps pointers whose value came from the environment to the
	// variable name, so messages never echo a secret.
	secret map[string]string
}

func (w *walker) errAt(file string, line int, ptr, format string, args ...any) {
	w.probs = append(w.probs, Problem{File: file, Line: line, Path: ptr, Message: fmt.Sprintf(format, args...)})
}

func (w *walker) toValue(n *yaml.Node, ptr, file string) any {
	if f, ok := w.fileOf[n]; ok {
		file = f
	}
	w.src[ptr] = Pos{File: file, Line: n.Line}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return w.toValue(n.Content[0], ptr, file)
	case yaml.AliasNode:
		// Aliases make configs harder to review and are the vector of
		// "billion laughs" expansion; configs are plain data.
		w.errAt(file, n.Line, ptr, "YAML anchors and aliases are not supported in config")
		return nil
	case yaml.MappingNode:
		obj := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kf := file
			if f, ok := w.fileOf[k]; ok {
				kf = f
			}
			if k.Kind != yaml.ScalarNode {
				w.errAt(kf, k.Line, ptr, "mapping keys must be plain strings")
				continue
			}
			if k.Value == "<<" && k.Tag == "!!merge" {
				w.errAt(kf, k.Line, ptr, "YAML merge keys (<<) are not supported in config")
				continue
			}
			child := ptr + "/" + escapePointer(k.Value)
			if _, dup := obj[k.Value]; dup {
				w.errAt(kf, k.Line, child, "duplicate key %q", k.Value)
				continue
			}
			w.src[child] = Pos{File: kf, Line: k.Line}
			obj[k.Value] = w.toValue(v, child, kf)
			// Keep the key's line for the value: a missing-field message
			// points at the object, a bad value at its own line.
			if v.Kind != yaml.ScalarNode {
				w.src[child] = Pos{File: kf, Line: k.Line}
			}
		}
		return obj
	case yaml.SequenceNode:
		arr := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			arr = append(arr, w.toValue(item, ptr+"/"+strconv.Itoa(i), file))
		}
		return arr
	case yaml.ScalarNode:
		return w.scalar(n, ptr, file)
	}
	w.errAt(file, n.Line, ptr, "unsupported YAML node")
	return nil
}

func (w *walker) scalar(n *yaml.Node, ptr, file string) any {
	tag := n.ShortTag()
	if tag == "!!str" && strings.Contains(n.Value, "$") {
		s, names, err := substitute(n.Value, w.env)
		if err != nil {
			w.errAt(file, n.Line, ptr, "%v", err)
			return ""
		}
		if len(names) > 0 {
			w.secret[ptr] = strings.Join(names, ",")
			n.Value = s
		}
		return s
	}
	switch tag {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			w.errAt(file, n.Line, ptr, "invalid boolean")
			return nil
		}
		return b
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			w.errAt(file, n.Line, ptr, "integer out of range")
			return nil
		}
		return json.Number(strconv.FormatInt(i, 10))
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			w.errAt(file, n.Line, ptr, "invalid number")
			return nil
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
	default:
		// !!str, !!timestamp (a date stays the text the user wrote), !!binary.
		return n.Value
	}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// substitute replaces ${NAME} with the environment's value. $${ is a
// literal ${. A reference to an unset variable is an error, so a missing
// secret is caught at load and not served as an empty string.
func substitute(s string, env LookupEnv) (string, []string, error) {
	var b strings.Builder
	var names []string
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if strings.HasPrefix(s[i:], "${") {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", nil, errors.New("unterminated ${ in value (write $${ for a literal ${)")
			}
			name := s[i+2 : i+end]
			if !envName.MatchString(name) {
				return "", nil, fmt.Errorf("invalid environment variable name in ${...}: %q", name)
			}
			v, ok := env(name)
			if !ok {
				return "", nil, fmt.Errorf("environment variable %s is not set", name)
			}
			names = append(names, name)
			b.WriteString(v)
			i += end + 1
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String(), names, nil
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
	schemaErr  error
)

func compiledSchema() (*jsonschema.Schema, error) {
	schemaOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
		if err != nil {
			schemaErr = err
			return
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource("schema.json", doc); err != nil {
			schemaErr = err
			return
		}
		schema, schemaErr = c.Compile("schema.json")
	})
	return schema, schemaErr
}

func schemaProblems(value any, src Sources, secret map[string]string) Problems {
	sch, err := compiledSchema()
	if err != nil {
		return Problems{{Message: "internal error: config schema does not compile: " + err.Error()}}
	}
	err = sch.Validate(value)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return Problems{{Message: err.Error()}}
	}
	var out Problems
	var leaves func(e *jsonschema.ValidationError)
	leaves = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				leaves(c)
			}
			return
		}
		ptr := ""
		for _, tok := range e.InstanceLocation {
			ptr += "/" + escapePointer(tok)
		}
		if ap, ok := e.ErrorKind.(*kind.AdditionalProperties); ok {
			// One problem per unknown key, on the key's own line.
			for _, k := range ap.Properties {
				kp := ptr + "/" + escapePointer(k)
				pos := src.At(kp)
				out = append(out, Problem{File: pos.File, Line: pos.Line, Path: kp, Message: fmt.Sprintf("unknown key %q (check the spelling; gatehouse config schema lists every key)", k)})
			}
			return
		}
		msg := e.ErrorKind.LocalizedString(printer)
		if names, ok := secret[ptr]; ok {
			kw := strings.Join(e.ErrorKind.KeywordPath(), "/")
			msg = fmt.Sprintf("value taken from ${%s} is invalid (fails %s)", names, kw)
		}
		pos := src.At(ptr)
		out = append(out, Problem{File: pos.File, Line: pos.Line, Path: ptr, Message: msg})
	}
	leaves(ve)
	return out
}

var printer = message.NewPrinter(language.English)
