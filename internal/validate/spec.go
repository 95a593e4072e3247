// Package validate checks requests against an API's OpenAPI document and
// filters responses down to what the document says may leave. Everything is
// compiled when the config loads; the request path only runs the result.
package validate

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"

	"github.com/getkin/kin-openapi/openapi3"
)

// Document is one loaded and checked OpenAPI document.
type Document struct {
	File string
	Doc  *openapi3.T
	// Invalid is set when the document loads but breaks the OpenAPI rules
	// (say, a path parameter left undeclared). Request validation refuses
	// such a document, since kin-openapi's behaviour on invalid schemas is
	// undefined; response filtering only reads property names and can
	// still use it.
	Invalid *SpecError
}

// SpecError is a problem in a spec, with its file and, where known, line.
type SpecError struct {
	File string
	Line int
	Msg  string
}

func (e *SpecError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

var lineInMsg = regexp.MustCompile(`line (\d+)`)

// LoadDocument loads file with kin-openapi and validates it, so schemas the
// validators will run are known to be well-formed. References to other
// files or URLs are refused: a spec must not make the gateway fetch things.
func LoadDocument(file string, data []byte) (*Document, error) {
	l := openapi3.NewLoader()
	l.IsExternalRefsAllowed = false
	l.ReadFromURIFunc = func(*openapi3.Loader, *url.URL) ([]byte, error) {
		return nil, fmt.Errorf("external references are not supported")
	}
	if data == nil {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return nil, &SpecError{File: file, Msg: "cannot read OpenAPI spec: " + err.Error()}
		}
	}
	doc, err := l.LoadFromData(data)
	if err != nil {
		return nil, specError(file, err)
	}
	d := &Document{File: file, Doc: doc}
	if err := doc.Validate(context.Background(), openapi3.DisableExamplesValidation()); err != nil {
		d.Invalid = specError(file, err)
	}
	return d, nil
}

func specError(file string, err error) *SpecError {
	msg := err.Error()
	line := 0
	if m := lineInMsg.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
	}
	return &SpecError{File: file, Line: line, Msg: "OpenAPI spec rejected by the validator: " + msg}
}
