package validate

import (
	"mime"
	"strconv"

	"github.com/getkin/kin-openapi/openapi3"
)

// ResponseFilter removes undocumented and denied fields from one
// operation's JSON responses.
type ResponseFilter struct {
	mode      Mode // Enforce drops, Report lists, Off only applies the deny list
	responses *openapi3.Responses
	shapes    map[*openapi3.Schema]*shape
	// documentsAny is false when the operation documents no response
	// schema at all: with nothing to filter against, bodies pass.
	documentsAny bool
	deny         *DenyList
}

// NewResponseFilter compiles the filter of the operation at method and path.
// It returns nil when there is nothing to do (mode off, no deny list).
func NewResponseFilter(d *Document, method, path string, mode Mode, deny *DenyList) *ResponseFilter {
	if mode == Off && deny == nil {
		return nil
	}
	f := &ResponseFilter{mode: mode, deny: deny, shapes: map[*openapi3.Schema]*shape{}}
	var op *openapi3.Operation
	if d != nil {
		if pi := d.Doc.Paths.Value(path); pi != nil {
			op = pi.GetOperation(method)
		}
	}
	if op == nil || op.Responses == nil {
		if deny == nil {
			return nil
		}
		return f
	}
	c := newShapeCompiler()
	for _, ref := range op.Responses.Map() {
		if ref == nil || ref.Value == nil {
			continue
		}
		for _, mt := range ref.Value.Content {
			if mt != nil && mt.Schema != nil && mt.Schema.Value != nil {
				f.shapes[mt.Schema.Value] = c.compile(mt.Schema.Value)
				f.documentsAny = true
			}
		}
	}
	if !f.documentsAny {
		if deny == nil {
			return nil // nothing documented to filter against, nothing denied
		}
		return f
	}
	f.responses = op.Responses
	return f
}

// Mode is the filter's mode.
func (f *ResponseFilter) Mode() Mode { return f.mode }

// IsJSON reports whether a Content-Type is one the filter rewrites.
func IsJSON(contentType string) bool {
	if contentType == "" {
		return false
	}
	media, _, err := mime.ParseMediaType(contentType)
	return err == nil && isJSON(media)
}

// shapeFor finds the documented shape of a status and content type.
func (f *ResponseFilter) shapeFor(status int, contentType string) *shape {
	if f.mode == Off || !f.documentsAny || f.responses == nil {
		return nil
	}
	ref := f.responses.Status(status)
	if ref == nil {
		ref = f.responses.Default()
	}
	if ref == nil || ref.Value == nil {
		// A status the spec never mentions documents nothing.
		return nothing
	}
	if len(ref.Value.Content) == 0 {
		return nothing
	}
	mt := ref.Value.Content.Get(contentType)
	if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
		return nil
	}
	return f.shapes[mt.Schema.Value]
}

// Outcome is what filtering one body did.
type Outcome struct {
	// Dropped are the pointers of undocumented fields (removed in enforce
	// mode, only listed in report mode), at most a few dozen, when asked
	// for; Undocumented counts them all.
	Dropped      []string
	Undocumented int
	// Denied counts fields removed by the deny list.
	Denied int
	// Changed is true when the output differs in content from the input.
	Changed bool
}

// Filter appends the filtered body to out. With pointers, the outcome
// lists where undocumented fields were (report mode always lists them).
// An error means the body is not JSON the filter can follow; the caller
// decides whether that fails.
func (f *ResponseFilter) Filter(out, body []byte, status int, contentType string, pointers bool) ([]byte, Outcome, error) {
	sh := f.shapeFor(status, contentType)
	res, dropped, ndrop, denied, err := filterJSON(out, body, sh, f.deny, f.mode != Enforce, pointers || f.mode == Report)
	if err != nil {
		return out, Outcome{}, err
	}
	o := Outcome{Dropped: dropped, Undocumented: ndrop, Denied: denied}
	o.Changed = denied > 0 || (f.mode == Enforce && ndrop > 0)
	return res, o, nil
}

// StatusKey is a response status as the spec writes it (for logs).
func StatusKey(status int) string { return strconv.Itoa(status) }
