package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong (or worth a warning) in a configuration.
type Problem struct {
	File    string
	Line    int
	Path    string // JSON pointer into the merged config, e.g. /apis/0/upstream
	Message string
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found in one load. As an error it holds at least
// one non-warning problem.
type Problems []Problem

func (ps Problems) Error() string {
	ps.Sort()
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Sort orders problems by file, line, then path, so output is stable.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Path < b.Path
	})
}

// Errors returns only the non-warning problems.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// Warnings returns only the warnings.
func (ps Problems) Warnings() Problems {
	var out Problems
	for _, p := range ps {
		if p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// Sources maps JSON pointers of the merged config to where they were written.
type Sources map[string]Pos

// Pos is a place in a file.
type Pos struct {
	File string
	Line int
}

// At returns the position of pointer, falling back to its nearest ancestor
// that has one (a missing key is reported where its parent object starts).
func (s Sources) At(pointer string) Pos {
	for {
		if p, ok := s[pointer]; ok {
			return p
		}
		i := strings.LastIndexByte(pointer, '/')
		if i < 0 {
			return Pos{}
		}
		pointer = pointer[:i]
	}
}

// Reporter collects problems with positions looked up from Sources.
type Reporter struct {
	Src      Sources
	Problems Problems
}

// Errorf records an error at pointer.
func (r *Reporter) Errorf(pointer, format string, args ...any) {
	pos := r.Src.At(pointer)
	r.Problems = append(r.Problems, Problem{File: pos.File, Line: pos.Line, Path: pointer, Message: fmt.Sprintf(format, args...)})
}

// Warnf records a warning at pointer.
func (r *Reporter) Warnf(pointer, format string, args ...any) {
	pos := r.Src.At(pointer)
	r.Problems = append(r.Problems, Problem{File: pos.File, Line: pos.Line, Path: pointer, Message: fmt.Sprintf(format, args...), Warning: true})
}

// AtFile records an error at an explicit file position (e.g. inside an
// OpenAPI spec), tagged with the config pointer that referenced it.
func (r *Reporter) AtFile(file string, line int, pointer, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{File: file, Line: line, Path: pointer, Message: fmt.Sprintf(format, args...)})
}

// Err returns the collected problems as an error if any is not a warning.
func (r *Reporter) Err() error {
	if len(r.Problems.Errors()) == 0 {
		return nil
	}
	return r.Problems
}
