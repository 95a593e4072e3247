package discover

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/internal/store"
)

// OpenAPIOptions name the learned document.
type OpenAPIOptions struct {
	Host  string
	Title string // default "Learned API of <host>"
	Now   time.Time
}

// LearnedOpenAPI writes what was observed on one host as an OpenAPI 3.1
// document (YAML): one path per learned template with its methods, each
// path parameter named after the resource before it and typed by what was
// seen, and the observed counts under x-gatehouse-observed. Operation IDs
// are unique, so `gatehouse config validate` accepts the document as a spec
// once an owner has reviewed it.
func LearnedOpenAPI(obs []store.DiscoveredEndpoint, o OpenAPIOptions) ([]byte, error) {
	title := o.Title
	if title == "" {
		title = "Learned API of " + o.Host
		if o.Host == "" {
			title = "Learned API (default host)"
		}
	}
	doc := &yaml.Node{Kind: yaml.MappingNode}
	add := func(m *yaml.Node, k string, v *yaml.Node) {
		m.Content = append(m.Content, str(k), v)
	}
	add(doc, "openapi", str("3.1.0"))
	info := mapping()
	add(info, "title", str(title))
	add(info, "version", str("learned-"+o.Now.UTC().Format("2006-01-02")))
	add(info, "description", str("Learned by Gatehouse from observed traffic. Review every path, name the parameters, "+
		"add request and response schemas, then register it as an API spec."))
	add(doc, "info", info)
	paths := mapping()
	add(doc, "paths", paths)

	type pathOps struct {
		template string
		eps      []store.DiscoveredEndpoint
	}
	byPath := map[string]*pathOps{}
	for _, e := range MergeShapes(obs) {
		if e.Host != o.Host || e.Method == "OTHER" {
			continue
		}
		s := Shape(e.Template)
		p := byPath[s]
		if p == nil {
			p = &pathOps{template: e.Template}
			byPath[s] = p
		} else {
			p.template = unionTemplate(p.template, e.Template)
		}
		p.eps = append(p.eps, e)
	}
	shapes := make([]string, 0, len(byPath))
	for s := range byPath {
		shapes = append(shapes, s)
	}
	sort.Strings(shapes)
	ids := map[string]int{}
	for _, s := range shapes {
		p := byPath[s]
		path, params := nameParams(p.template)
		item := mapping()
		sort.Slice(p.eps, func(i, j int) bool { return methodOrder(p.eps[i].Method) < methodOrder(p.eps[j].Method) })
		for _, e := range p.eps {
			op := mapping()
			id := operationID(e.Method, p.template)
			if n := ids[id]; n > 0 {
				ids[id] = n + 1
				id = fmt.Sprintf("%s%d", id, n+1)
			} else {
				ids[id] = 1
			}
			add(op, "operationId", str(id))
			add(op, "summary", str(fmt.Sprintf("Observed %d calls between %s and %s", e.Count,
				e.FirstSeen.UTC().Format(time.RFC3339), e.LastSeen.UTC().Format(time.RFC3339))))
			if len(params) > 0 {
				list := &yaml.Node{Kind: yaml.SequenceNode}
				for _, pr := range params {
					pm := mapping()
					add(pm, "name", str(pr.name))
					add(pm, "in", str("path"))
					add(pm, "required", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
					add(pm, "schema", schemaFor(pr.kind))
					list.Content = append(list.Content, pm)
				}
				add(op, "parameters", list)
			}
			if e.BodySchema != "" {
				var schema any
				sn := &yaml.Node{}
				if json.Unmarshal([]byte(e.BodySchema), &schema) == nil && sn.Encode(schema) == nil {
					media, content, body := mapping(), mapping(), mapping()
					add(media, "schema", sn)
					add(content, "application/json", media)
					add(body, "description", str("Inferred from sampled request bodies (shape only, no values)"))
					add(body, "content", content)
					add(op, "requestBody", body)
				}
			}
			resp := mapping()
			for _, rc := range []struct {
				code string
				n    int64
				desc string
			}{{"2XX", e.Status1xx2xx, "Success (observed)"}, {"3XX", e.Status3xx, "Redirect (observed)"},
				{"4XX", e.Status4xx, "Client error (observed)"}, {"5XX", e.Status5xx, "Server error (observed)"}} {
				if rc.n > 0 {
					r := mapping()
					add(r, "description", str(fmt.Sprintf("%s: %d responses", rc.desc, rc.n)))
					add(resp, rc.code, r)
				}
			}
			if len(resp.Content) == 0 {
				r := mapping()
				add(r, "description", str("No response observed"))
				add(resp, "default", r)
			}
			add(op, "responses", resp)
			x := mapping()
			add(x, "count", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprint(e.Count)})
			add(x, "first_seen", str(e.FirstSeen.UTC().Format(time.RFC3339)))
			add(x, "last_seen", str(e.LastSeen.UTC().Format(time.RFC3339)))
			add(op, "x-gatehouse-observed", x)
			add(item, strings.ToLower(e.Method), op)
		}
		add(paths, path, item)
	}
	out, err := yaml.Marshal(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}})
	if err != nil {
		return nil, fmt.Errorf("write learned OpenAPI: %w", err)
	}
	return out, nil
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
func mapping() *yaml.Node     { return &yaml.Node{Kind: yaml.MappingNode} }

func methodOrder(m string) int {
	for i, x := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"} {
		if m == x {
			return i
		}
	}
	return 99
}

func schemaFor(k Kind) *yaml.Node {
	m := mapping()
	kv := func(k, v string) { m.Content = append(m.Content, str(k), str(v)) }
	switch k {
	case KindInt:
		kv("type", "integer")
		kv("format", "int64")
	case KindUUID:
		kv("type", "string")
		kv("format", "uuid")
	case KindHex:
		kv("type", "string")
		kv("pattern", "^[0-9a-fA-F]+$")
	case KindDate:
		kv("type", "string")
		kv("format", "date")
	default:
		kv("type", "string")
	}
	return m
}

type learnedParam struct {
	name string
	kind Kind
}

// nameParams names each parameter of a learned template after the literal
// before it (/orders/{int} → /orders/{orderId}), falling back to param<N>.
func nameParams(template string) (string, []learnedParam) {
	orig := strings.Split(template, "/")
	segs := append([]string(nil), orig...)
	var params []learnedParam
	used := map[string]bool{}
	for i, s := range segs {
		k, ok := kindOfToken(s)
		if !ok {
			continue
		}
		name := ""
		if i > 0 {
			if _, prevParam := kindOfToken(orig[i-1]); !prevParam && orig[i-1] != "" {
				name = identifier(singular(orig[i-1])) + "Id"
			}
		}
		if name == "Id" || name == "" {
			name = fmt.Sprintf("param%d", len(params)+1)
		}
		for base, n := name, 2; used[name]; n++ {
			name = fmt.Sprintf("%s%d", base, n)
		}
		used[name] = true
		segs[i] = "{" + name + "}"
		params = append(params, learnedParam{name: name, kind: k})
	}
	return strings.Join(segs, "/"), params
}

// singular is a deliberately small English singulariser: the owner renames
// parameters anyway, a readable first guess is enough.
func singular(s string) string {
	switch {
	case strings.HasSuffix(s, "ies") && len(s) > 3:
		return s[:len(s)-3] + "y"
	case strings.HasSuffix(s, "sses"), strings.HasSuffix(s, "xes"):
		return s[:len(s)-2]
	case strings.HasSuffix(s, "s") && !strings.HasSuffix(s, "ss") && len(s) > 1:
		return s[:len(s)-1]
	}
	return s
}

// identifier turns a path segment into lowerCamel letters and digits.
func identifier(s string) string {
	var b strings.Builder
	up := false
	for _, r := range s {
		switch {
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			if b.Len() == 0 && unicode.IsDigit(r) {
				b.WriteByte('p')
			}
			if up && b.Len() > 0 {
				r = unicode.ToUpper(r)
			}
			b.WriteRune(r)
			up = false
		default:
			up = true
		}
	}
	return b.String()
}

// operationID is method + the template's literals: GET /orders/{int}/items
// → getOrdersItems.
func operationID(method, template string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, s := range strings.Split(template, "/") {
		if _, ok := kindOfToken(s); ok || s == "" {
			continue
		}
		id := identifier(s)
		if id == "" {
			continue
		}
		b.WriteString(strings.ToUpper(id[:1]) + id[1:])
	}
	if strings.HasSuffix(template, "}") {
		b.WriteString("ById")
	}
	return b.String()
}
