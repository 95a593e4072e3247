package validate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// Mode says what a failed check does.
type Mode uint8

// Modes: Enforce refuses, Report logs and passes, Off does nothing.
const (
	Off Mode = iota
	Report
	Enforce
)

// ParseMode maps a config mode word to a Mode (documented counts as Enforce).
func ParseMode(s string) Mode {
	switch s {
	case "enforce", "documented":
		return Enforce
	case "report":
		return Report
	default:
		return Off
	}
}

func (m Mode) String() string {
	switch m {
	case Enforce:
		return "enforce"
	case Report:
		return "report"
	}
	return "off"
}

// Violation is one way a request breaks the spec: where (a JSON pointer into
// the request seen as {path, query, header, cookie, body}) and a generic
// description that never repeats the offending value.
type Violation struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// Result is the outcome of checking one request.
type Result struct {
	// Status is 0 when the request conforms, else the status to refuse it
	// with: 400, 413 or 415.
	Status     int
	Reason     string // stable reason code for logs and metrics
	Violations []Violation
}

// Params are the path parameters the gateway's router extracted, escaped.
type Params interface {
	Len() int
	At(i int) (name, value string)
}

// RequestOptions configure one operation's request validator.
type RequestOptions struct {
	Mode         Mode
	Strict       bool
	MaxDepth     int
	MaxBodyBytes int64
}

// Request validates requests of one operation. It is immutable and shared
// by all requests.
type Request struct {
	opts   RequestOptions
	route  *routers.Route
	params []*openapi3.Parameter
	fastP  []*fastParam // per params[i]; nil entries need kin-openapi
	body   *openapi3.RequestBody
	// strict shapes per request body schema, for mass-assignment checks.
	shapes map[*openapi3.Schema]*shape
	// fast per JSON body schema: the allocation-free pass that lets a
	// conforming body skip kin-openapi (nil: a schema it cannot judge).
	fast map[*openapi3.Schema]*fastBody
	// schema2020: the document is OpenAPI 3.1 (JSON Schema 2020-12).
	schema2020 bool
	kinOpts    *openapi3filter.Options
	visitOpts  []openapi3.SchemaValidationOption
}

// maxViolations bounds the list returned to the client (and the work done
// on a hostile body).
const maxViolations = 20

// NewRequest compiles the validator of the operation at method and path of
// doc. It returns an error when the document has no such operation.
func NewRequest(d *Document, method, path string, o RequestOptions) (*Request, error) {
	pi := d.Doc.Paths.Value(path)
	if pi == nil {
		return nil, fmt.Errorf("path %s not found in %s", path, d.File)
	}
	op := pi.GetOperation(method)
	if op == nil {
		return nil, fmt.Errorf("operation %s %s not found in %s", method, path, d.File)
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = 32
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	v := &Request{
		opts:  o,
		route: &routers.Route{Spec: d.Doc, Path: path, PathItem: pi, Method: method, Operation: op},
		kinOpts: &openapi3filter.Options{
			MultiError:          true,
			SkipSettingDefaults: true, // the upstream gets the client's bytes, never a rewrite
			SchemaValidationOptions: []openapi3.SchemaValidationOption{
				openapi3.WithStringFormatValidators(stringFormats),
			},
		},
		visitOpts: []openapi3.SchemaValidationOption{
			openapi3.VisitAsRequest(), openapi3.MultiErrors(),
			openapi3.WithStringFormatValidators(stringFormats),
		},
	}
	if d.Doc.IsOpenAPI31OrLater() {
		// A 3.1 document's schemas are JSON Schema 2020-12 (prefixItems,
		// const, unevaluatedProperties, numeric exclusive bounds, no
		// nullable): kin-openapi's 2020 validator, as its openapi3filter
		// already uses for parameters.
		v.visitOpts = append(v.visitOpts, openapi3.EnableJSONSchema2020())
		v.schema2020 = true
	}
	// Operation parameters override path-item ones of the same in+name.
	for _, p := range pi.Parameters {
		if p.Value != nil && (op.Parameters == nil || op.Parameters.GetByInAndName(p.Value.In, p.Value.Name) == nil) {
			v.params = append(v.params, p.Value)
		}
	}
	for _, p := range op.Parameters {
		if p.Value != nil {
			v.params = append(v.params, p.Value)
		}
	}
	v.fastP = make([]*fastParam, len(v.params))
	for i, p := range v.params {
		v.fastP[i] = compileFastParam(p)
	}
	if op.RequestBody != nil {
		v.body = op.RequestBody.Value
	}
	if v.body != nil && o.Strict {
		c := newShapeCompiler()
		v.shapes = map[*openapi3.Schema]*shape{}
		for _, mt := range v.body.Content {
			if mt != nil && mt.Schema != nil && mt.Schema.Value != nil {
				v.shapes[mt.Schema.Value] = c.compile(mt.Schema.Value)
			}
		}
	}
	// The fast pass follows the 3.0 rules (nullable, boolean exclusive
	// bounds); a 2020-12 document is left to kin-openapi.
	if v.body != nil && !v.schema2020 {
		v.fast = map[*openapi3.Schema]*fastBody{}
		for media, mt := range v.body.Content {
			if mt == nil || mt.Schema == nil || mt.Schema.Value == nil || !isJSON(media) {
				continue
			}
			if fb := compileFastBody(mt.Schema.Value, v.shapes[mt.Schema.Value]); fb != nil {
				v.fast[mt.Schema.Value] = fb
			}
		}
	}
	return v, nil
}

// Mode is the operation's validation mode.
func (v *Request) Mode() Mode { return v.opts.Mode }

// Check validates r. It reads the body (bounded) and puts the very same
// bytes back, so the upstream receives exactly what the client sent,
// whatever the result.
func (v *Request) Check(r *http.Request, pp Params) Result {
	var res Result
	add := func(ptr, detail string) {
		if len(res.Violations) < maxViolations {
			res.Violations = append(res.Violations, Violation{Pointer: ptr, Detail: detail})
		}
	}
	var q url.Values
	if r.URL.RawQuery != "" {
		var err error
		if q, err = url.ParseQuery(r.URL.RawQuery); err != nil {
			// A query Go cannot parse (a ';' separator, a broken escape)
			// is one the backend might read differently: refuse it rather
			// than validate a different reading of it.
			add("/query", "the query string is malformed")
		}
	}
	if len(v.params) > 0 && (q != nil || r.URL.RawQuery == "") {
		v.checkParams(r, pp, q, add)
	}
	data, tooLarge, err := v.readBody(r)
	switch {
	case err != nil:
		return Result{Status: http.StatusBadRequest, Reason: "body_unreadable", Violations: []Violation{{Pointer: "/body", Detail: "the request body could not be read"}}}
	case tooLarge:
		return Result{Status: http.StatusRequestEntityTooLarge, Reason: "body_too_large"}
	}
	if st, reason := v.checkBody(r, data, add); st != 0 {
		return Result{Status: st, Reason: reason, Violations: res.Violations}
	}
	if len(res.Violations) > 0 {
		res.Status, res.Reason = http.StatusBadRequest, "schema"
	}
	return res
}

// readBody reads at most MaxBodyBytes and re-installs what it read. A body
// over the bound is put back intact (buffered prefix, then the rest) so
// report mode can still pass it on.
func (v *Request) readBody(r *http.Request) (data []byte, tooLarge bool, err error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, false, nil
	}
	if r.ContentLength > v.opts.MaxBodyBytes {
		return nil, true, nil
	}
	if r.ContentLength > 0 {
		// Known length: one exact allocation, then make sure nothing
		// follows (a body longer than announced is a framing error).
		data = make([]byte, r.ContentLength)
		if _, err = io.ReadFull(r.Body, data); err != nil {
			return nil, false, err
		}
		var one [1]byte
		if n, _ := r.Body.Read(one[:]); n > 0 {
			return nil, false, io.ErrUnexpectedEOF
		}
	} else {
		buf := bytes.NewBuffer(make([]byte, 0, 512))
		_, err = buf.ReadFrom(io.LimitReader(r.Body, v.opts.MaxBodyBytes+1))
		data = buf.Bytes()
		if err != nil {
			return nil, false, err
		}
	}
	if int64(len(data)) > v.opts.MaxBodyBytes {
		r.Body = readCloser{io.MultiReader(bytes.NewReader(data), r.Body), r.Body}
		return nil, true, nil
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.ContentLength = int64(len(data))
	r.TransferEncoding = nil
	if len(data) == 0 {
		r.Body = http.NoBody
	}
	return data, false, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

func (v *Request) checkParams(r *http.Request, pp Params, q url.Values, add func(string, string)) {
	if q == nil {
		q = url.Values{}
	}
	var path map[string]string
	if pp != nil && pp.Len() > 0 {
		path = make(map[string]string, pp.Len())
		for i := 0; i < pp.Len(); i++ {
			n, val := pp.At(i)
			if dec, err := url.PathUnescape(val); err == nil {
				val = dec
			}
			path[n] = val
		}
	}
	var in *openapi3filter.RequestValidationInput
	ctx := context.Background()
	for i, p := range v.params {
		if f := v.fastP[i]; f != nil {
			if val, ok := f.value(r, path, q); ok && f.accepts(val) {
				continue
			}
		}
		if in == nil {
			in = &openapi3filter.RequestValidationInput{Request: r, PathParams: path, QueryParams: q, Route: v.route, Options: v.kinOpts}
		}
		if err := openapi3filter.ValidateParameter(ctx, in, p); err != nil {
			base := "/" + p.In + "/" + escapePointer(p.Name)
			flatten(err, base, add)
		}
	}
}

// checkBody returns a non-zero status for refusals that end the check
// (415, malformed JSON); schema violations go to add.
func (v *Request) checkBody(r *http.Request, data []byte, add func(string, string)) (int, string) {
	if len(data) == 0 {
		if v.body != nil && v.body.Required {
			add("/body", "a request body is required")
			return http.StatusBadRequest, "body_required"
		}
		return 0, ""
	}
	if v.body == nil {
		// Positive model: an operation the spec gives no body takes none.
		return http.StatusUnsupportedMediaType, "body_not_accepted"
	}
	ct := r.Header.Get("Content-Type")
	mt := v.body.Content.Get(ct)
	if ct == "" || mt == nil {
		if len(v.body.Content) == 0 {
			return 0, "" // any content: the spec does not say
		}
		return http.StatusUnsupportedMediaType, "content_type"
	}
	media, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return http.StatusUnsupportedMediaType, "content_type"
	}
	if !isJSON(media) {
		if (strings.HasPrefix(media, "text/") || media == "application/x-www-form-urlencoded") && !utf8.Valid(data) {
			add("/body", "the body is not valid UTF-8")
			return http.StatusBadRequest, "invalid_utf8"
		}
		if mt.Schema == nil {
			return 0, ""
		}
		in := &openapi3filter.RequestValidationInput{Request: r, Route: v.route, Options: v.kinOpts}
		if err := openapi3filter.ValidateRequestBody(context.Background(), in, v.body); err != nil {
			flatten(err, "/body", add)
		}
		return 0, ""
	}
	if err := ScanJSON(data, v.opts.MaxDepth); err != nil {
		var se *ScanError
		errors.As(err, &se)
		ptr := "/body" + se.Pointer
		switch {
		case errors.Is(err, ErrDuplicateKey):
			add(ptr, "duplicate object key")
			return http.StatusBadRequest, "duplicate_key"
		case errors.Is(err, ErrTooDeep):
			add(ptr, "the body is nested too deeply")
			return http.StatusBadRequest, "too_deep"
		case errors.Is(err, ErrInvalidUTF8):
			add(ptr, "the body is not valid UTF-8")
			return http.StatusBadRequest, "invalid_utf8"
		default:
			add("/body", "the body is not well-formed JSON")
			return http.StatusBadRequest, "malformed_json"
		}
	}
	if mt.Schema == nil || mt.Schema.Value == nil {
		return 0, ""
	}
	if fb := v.fast[mt.Schema.Value]; fb != nil && fb.valid(data) {
		return 0, ""
	}
	val, err := decodeJSON(data)
	if err != nil {
		add("/body", "the body is not well-formed JSON")
		return http.StatusBadRequest, "malformed_json"
	}
	if err := mt.Schema.Value.VisitJSON(val, v.visitOpts...); err != nil {
		flatten(err, "/body", add)
	}
	if v.schema2020 {
		// kin-openapi's 2020-12 validator does not refuse readOnly fields
		// in requests; mass-assignment protection must not depend on the
		// spec's OpenAPI version.
		for _, p := range readOnlyFields(val, mt.Schema.Value, "/body", nil, 0) {
			add(p, "is read-only")
		}
	}
	if sh := v.shapes[mt.Schema.Value]; sh != nil {
		unknown := unknownFields(val, sh, "/body", nil, maxViolations)
		sort.Strings(unknown)
		for _, p := range unknown {
			add(p, "is not a documented property")
		}
	}
	return 0, ""
}

func unsupportedProperty(reason string) (string, bool) {
	rest, ok := strings.CutPrefix(reason, "property ")
	if !ok {
		return "", false
	}
	q, ok := strings.CutSuffix(rest, " is unsupported")
	if !ok {
		return "", false
	}
	name, err := strconv.Unquote(q)
	return name, err == nil
}

func isJSON(media string) bool {
	return media == "application/json" || strings.HasSuffix(media, "+json")
}

// flatten turns kin-openapi's errors into violations with generic details.
func flatten(err error, base string, add func(string, string)) {
	var me openapi3.MultiError
	if errors.As(err, &me) {
		for _, e := range me {
			flatten(e, base, add)
		}
		return
	}
	var re *openapi3filter.RequestError
	if errors.As(err, &re) {
		switch {
		case errors.Is(re.Err, openapi3filter.ErrInvalidRequired):
			add(base, "is required")
		case errors.Is(re.Err, openapi3filter.ErrInvalidEmptyValue):
			add(base, "must not be empty")
		case re.Err == nil:
			add(base, "is invalid")
		default:
			flatten(re.Err, base, add)
		}
		return
	}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		if inner := se.Origin; inner != nil {
			var me openapi3.MultiError
			if errors.As(inner, &me) && se.SchemaField != "oneOf" && se.SchemaField != "anyOf" {
				flatten(me, base, add)
				return
			}
		}
		ptr := base
		for _, p := range se.JSONPointer() {
			ptr += "/" + escapePointer(p)
		}
		if se.SchemaField == "properties" {
			// kin-openapi names an unsupported property only in its reason.
			if name, ok := unsupportedProperty(se.Reason); ok {
				add(ptr+"/"+escapePointer(name), "is not an allowed property")
				return
			}
		}
		add(ptr, schemaDetail(se))
		return
	}
	var pe *openapi3filter.ParseError
	if errors.As(err, &pe) {
		add(base, "cannot be parsed as the documented type")
		return
	}
	add(base, "is invalid")
}

// schemaDetail describes a schema violation from the spec's side only: the
// rule broken, never the value that broke it.
func schemaDetail(se *openapi3.SchemaError) string {
	s := se.Schema
	switch se.SchemaField {
	case "type":
		if s != nil && s.Type != nil && len(*s.Type) > 0 {
			return "must be of type " + strings.Join(*s.Type, " or ")
		}
		return "has the wrong type"
	case "format":
		if s != nil && s.Format != "" {
			return "must be a valid " + s.Format
		}
		return "has the wrong format"
	case "pattern":
		return "does not match the required pattern"
	case "enum", "const":
		return "is not one of the allowed values"
	case "minLength":
		return "is too short"
	case "maxLength":
		return "is too long"
	case "minimum", "exclusiveMinimum":
		return "is below the allowed minimum"
	case "maximum", "exclusiveMaximum":
		return "is above the allowed maximum"
	case "multipleOf":
		return "is not an allowed multiple"
	case "minItems":
		return "has too few items"
	case "maxItems":
		return "has too many items"
	case "uniqueItems":
		return "items must be unique"
	case "minProperties":
		return "has too few properties"
	case "maxProperties":
		return "has too many properties"
	case "required":
		return "is required"
	case "additionalProperties", "unevaluatedProperties":
		return "is not an allowed property"
	case "readOnly":
		return "is read-only and cannot be set in a request"
	case "nullable":
		return "must not be null"
	case "oneOf", "anyOf", "allOf", "not":
		return "does not match the schema"
	}
	return "is invalid"
}

// readOnlyFields lists the pointers of properties of v that s (through
// properties, items, additionalProperties and the allOf/anyOf/oneOf
// branches) marks readOnly, at most maxViolations.
func readOnlyFields(v any, s *openapi3.Schema, prefix string, out []string, depth int) []string {
	if s == nil || len(out) >= maxViolations || depth > 64 {
		return out
	}
	for _, refs := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, r := range refs {
			if r != nil {
				out = readOnlyFields(v, r.Value, prefix, out, depth+1)
			}
		}
	}
	switch t := v.(type) {
	case map[string]any:
		for k, cv := range t {
			p := prefix + "/" + escapePointer(k)
			if r := s.Properties[k]; r != nil && r.Value != nil {
				if r.Value.ReadOnly && cv != nil && !slices.Contains(out, p) {
					out = append(out, p)
					continue
				}
				out = readOnlyFields(cv, r.Value, p, out, depth+1)
			} else if r := s.AdditionalProperties.Schema; r != nil {
				out = readOnlyFields(cv, r.Value, p, out, depth+1)
			}
		}
	case []any:
		if s.Items != nil {
			for i, cv := range t {
				out = readOnlyFields(cv, s.Items.Value, prefix+"/"+itoa(i), out, depth+1)
			}
		}
	}
	return out
}
