package waf

import (
	"bytes"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"sync"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
)

// ruleIndex describes the embedded CRS, so a config that excludes a rule or
// tag that does not exist is refused at load instead of leaving the rule (and
// its false positive) silently in place, and so exclusions cannot remove the
// rules that make the CRS work.
type ruleIndex struct {
	version string
	ids     map[int]bool
	tags    map[string]bool
	// skips are the rules that skip the checks above the configured paranoia
	// level (9xx011-9xx018): removing one changes paranoia, not detection.
	skips map[int]bool
	// protectedTags are the tags on setup and anomaly-evaluation rules.
	protectedTags map[string]bool
}

var (
	// A directive starts at the beginning of a line; chained rules are
	// indented, so they stay with the rule that starts their chain.
	directiveStart = regexp.MustCompile(`(?m)^Sec(?:Rule|Action|Marker)\b`)
	idPattern      = regexp.MustCompile(`\bid:'?(\d+)`)
	tagDecl        = regexp.MustCompile(`\btag:'([^']+)'`)
	versionPattern = regexp.MustCompile(`ver:'OWASP_CRS/([0-9.]+)'`)
)

var crsIndex = sync.OnceValues(func() (*ruleIndex, error) {
	files, err := fs.Glob(coreruleset.FS, "@owasp_crs/REQUEST-*.conf")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("index embedded CRS rules: no rule files found (%v)", err)
	}
	idx := &ruleIndex{ids: map[int]bool{}, tags: map[string]bool{}, skips: map[int]bool{}, protectedTags: map[string]bool{}}
	for _, name := range files {
		b, err := fs.ReadFile(coreruleset.FS, name)
		if err != nil {
			return nil, fmt.Errorf("index embedded CRS rules: %w", err)
		}
		if idx.version == "" {
			if m := versionPattern.FindSubmatch(b); m != nil {
				idx.version = string(m[1])
			}
		}
		starts := directiveStart.FindAllIndex(b, -1)
		for i, s := range starts {
			end := len(b)
			if i+1 < len(starts) {
				end = starts[i+1][0]
			}
			idx.add(b[s[0]:end])
		}
	}
	if len(idx.ids) == 0 {
		return nil, fmt.Errorf("index embedded CRS rules: no rule IDs found in %d files", len(files))
	}
	return idx, nil
})

func (idx *ruleIndex) add(rule []byte) {
	m := idPattern.FindSubmatch(rule)
	if m == nil {
		return
	}
	id, err := strconv.Atoi(string(m[1]))
	if err != nil {
		return
	}
	idx.ids[id] = true
	if bytes.Contains(rule, []byte("skipAfter:END-")) && bytes.Contains(rule, []byte("PARANOIA_LEVEL")) {
		idx.skips[id] = true
	}
	for _, t := range tagDecl.FindAllSubmatch(rule, -1) {
		tag := string(t[1])
		idx.tags[tag] = true
		if isBookkeepingRule(id) {
			idx.protectedTags[tag] = true
		}
	}
}

// CRSVersion is the version of the embedded OWASP Core Rule Set, for the
// audit trail and `gatehouse version`.
func CRSVersion() string {
	idx, err := crsIndex()
	if err != nil {
		return "unknown"
	}
	return idx.version
}
