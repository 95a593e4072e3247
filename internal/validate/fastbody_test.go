package validate

import (
	"bytes"
	"io"
	"net/http/httptest"
	"testing"
)

func fastFixture(t testing.TB, path string, strict bool) *Request {
	t.Helper()
	d, err := LoadDocument("testdata/fastbody.yaml", nil)
	if err != nil || d.Invalid != nil {
		t.Fatalf("load fixture: %v %v", err, d.Invalid)
	}
	v, err := NewRequest(d, "POST", path, RequestOptions{Mode: Enforce, Strict: strict, MaxDepth: 16, MaxBodyBytes: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// slowVerdict is what the kin-openapi path alone says of body.
func slowVerdict(v *Request, body []byte) Result {
	saved := v.fast
	v.fast = nil
	defer func() { v.fast = saved }()
	return check(v, body)
}

func check(v *Request, body []byte) Result {
	r := httptest.NewRequest("POST", "/x", io.NopCloser(bytes.NewReader(body)))
	r.Header.Set("Content-Type", "application/json")
	r.ContentLength = int64(len(body))
	return v.Check(r, nil)
}

func fastVerdict(v *Request, body []byte) (judged, valid bool) {
	if ScanJSON(body, v.opts.MaxDepth) != nil {
		return false, false
	}
	for _, fb := range v.fast {
		return true, fb.valid(body)
	}
	return false, false
}

// Every row: the fast pass's answer, and that the full result with it is
// the full result without it (the fast pass changes speed, not verdicts).
func TestFastBodyAgreesWithKin(t *testing.T) {
	thing := fastFixture(t, "/things", false)
	strict := fastFixture(t, "/things", true)
	loose := fastFixture(t, "/loose", false)
	for _, v := range []*Request{thing, strict, loose} {
		if len(v.fast) != 1 {
			t.Fatalf("fixture schema got no fast pass: every keyword in it should be supported")
		}
	}
	cases := []struct {
		name string
		v    *Request
		body string
		fast bool // the fast pass accepts it
	}{
		{"minimal", thing, `{"name":"ab","qty":1}`, true},
		{"everything", thing, `{"name":"abcde","code":"AB12","qty":1000,"ratio":0.5,"big":9007199254740993,"kind":"small","level":2.5,
			"id":"3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e","email":"a@example.com","when":"2026-11-27T10:00:00Z","flag":true,"note":null,
			"tags":["a","bcd"],"child":{"name":"kid","qty":2},"meta":{"a":1,"b":"x"},"mixed":{"x":1,"y":"z"},"free":{"q":[1,{"r":null}]}}`, true},
		{"escaped strings", thing, `{"name":"\u00e9t\u00e9","qty":3,"kind":"sm\u0061ll"}`, true},
		{"multibyte length counts runes", thing, `{"name":"ééééé","qty":3}`, true},
		{"name too long in runes", thing, `{"name":"éééééé","qty":3}`, false},
		{"name too short", thing, `{"name":"a","qty":1}`, false},
		{"missing required", thing, `{"name":"ab"}`, false},
		{"qty not integer", thing, `{"name":"ab","qty":1.5}`, false},
		{"qty integral float", thing, `{"name":"ab","qty":2.0}`, true},
		{"qty exponent", thing, `{"name":"ab","qty":1e2}`, true},
		{"qty over max", thing, `{"name":"ab","qty":1001}`, false},
		{"qty as string", thing, `{"name":"ab","qty":"1"}`, false},
		{"ratio on exclusive bound", thing, `{"name":"ab","qty":1,"ratio":0}`, false},
		{"ratio beyond float32", thing, `{"name":"ab","qty":1,"ratio":1e39}`, false},
		{"pattern miss", thing, `{"name":"ab","qty":1,"code":"ab12"}`, false},
		{"enum miss", thing, `{"name":"ab","qty":1,"kind":"medium"}`, false},
		{"number enum miss", thing, `{"name":"ab","qty":1,"level":2}`, false},
		{"bad uuid", thing, `{"name":"ab","qty":1,"id":"not-a-uuid"}`, false},
		{"bad email", thing, `{"name":"ab","qty":1,"email":"Ann <a@example.com>"}`, false},
		{"bad date-time", thing, `{"name":"ab","qty":1,"when":"yesterday"}`, false},
		{"null not nullable", thing, `{"name":null,"qty":1}`, false},
		{"unknown property (additionalProperties false)", thing, `{"name":"ab","qty":1,"role":"admin"}`, false},
		{"readOnly sent", thing, `{"name":"ab","qty":1,"secret":"x"}`, false},
		{"too many tags", thing, `{"name":"ab","qty":1,"tags":["a","b","c","d"]}`, false},
		{"no tags", thing, `{"name":"ab","qty":1,"tags":[]}`, false},
		{"tag too long", thing, `{"name":"ab","qty":1,"tags":["abcde"]}`, false},
		{"recursive child invalid", thing, `{"name":"ab","qty":1,"child":{"name":"ab","qty":0}}`, false},
		{"meta additional not string", thing, `{"name":"ab","qty":1,"meta":{"b":2}}`, false},
		{"allOf part missing", thing, `{"name":"ab","qty":1,"mixed":{"y":"z"}}`, false},
		{"allOf part wrong type", thing, `{"name":"ab","qty":1,"mixed":{"x":1,"y":2}}`, false},
		{"array at top", thing, `[{"name":"ab","qty":1}]`, false},
		{"strict: undocumented nested in free object passes kin", thing, `{"name":"ab","qty":1,"meta":{"a":1,"zzz":"x"}}`, true},
		{"strict: documented only", strict, `{"name":"ab","qty":1,"meta":{"a":1}}`, true},
		{"strict: free object keeps any property", strict, `{"name":"ab","qty":1,"free":{"q":1}}`, true},
		{"loose: additional ints on the inclusive bound", loose, `{"id2":1,"k":-5}`, true},
		{"loose: additional below minimum", loose, `{"k":-6}`, false},
		{"loose: additional beyond int32", loose, `{"k":1e10}`, false},
		{"loose: readOnly required may be missing", loose, `{"k":4}`, true},
		{"loose: on exclusive max", loose, `{"k":5}`, false},
		{"loose: too many properties", loose, `{"a":1,"b":2,"c":3,"d":4}`, false},
		{"loose: empty", loose, `{}`, false},
		{"loose: nullable enum null", loose, `{"maybe":null}`, true},
		{"loose: nullable enum miss", loose, `{"maybe":"c"}`, false},
		{"loose: any takes anything", loose, `{"any":[1,"x",{"y":null}]}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			judged, valid := fastVerdict(tc.v, body)
			if !judged {
				t.Fatal("fast pass did not judge the body")
			}
			if valid != tc.fast {
				t.Errorf("fast pass says %v, want %v", valid, tc.fast)
			}
			slow := slowVerdict(tc.v, body)
			if valid && slow.Status != 0 {
				t.Fatalf("fast pass accepted what kin-openapi refuses: %+v", slow)
			}
			full := check(tc.v, body)
			if full.Status != slow.Status || len(full.Violations) != len(slow.Violations) {
				t.Errorf("result with fast pass %+v differs from kin-openapi alone %+v", full, slow)
			}
		})
	}
}

// A schema with a keyword the fast pass does not handle gets none.
func TestFastBodyLeavesUnsupportedSchemasToKin(t *testing.T) {
	d, err := LoadDocument("spec.yaml", []byte(`openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /x:
    post:
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                pet:
                  oneOf: [{type: string}, {type: integer}]
      responses: {"200": {description: ok}}
`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewRequest(d, "POST", "/x", RequestOptions{Mode: Enforce})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.fast) != 0 {
		t.Fatal("a oneOf schema got a fast pass")
	}
	if res := check(v, []byte(`{"pet":true}`)); res.Status != 400 {
		t.Errorf("kin-openapi path not taken: %+v", res)
	}
}

// FuzzFastBodyNeverLooser: whatever body the fast pass accepts, kin-openapi
// (with strict mode's undocumented-property check) accepts too.
func FuzzFastBodyNeverLooser(f *testing.F) {
	for _, s := range []string{
		`{"name":"ab","qty":1}`, `{"name":"abcde","code":"AB12","qty":1000,"ratio":0.5,"tags":["a"],"child":{"name":"kid","qty":2}}`,
		`{"name":"\u00e9t","qty":3,"meta":{"a":1,"b":"x"},"mixed":{"x":1}}`, `{"k":4}`, `{"maybe":null,"any":{}}`,
		`{"name":"ab","qty":1,"free":{"q":[1,{"r":null}]},"note":null,"level":1}`,
	} {
		f.Add([]byte(s), uint8(0))
	}
	vs := []*Request{fastFixture(f, "/things", false), fastFixture(f, "/things", true), fastFixture(f, "/loose", false)}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		v := vs[int(which)%len(vs)]
		judged, valid := fastVerdict(v, body)
		if !judged || !valid {
			return
		}
		if slow := slowVerdict(v, body); slow.Status != 0 {
			t.Fatalf("fast pass accepted %q, kin-openapi refuses: %+v", body, slow)
		}
	})
}
