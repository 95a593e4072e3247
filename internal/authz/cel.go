package authz

import (
	"fmt"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"

	"github.com/gatehouse/gatehouse/internal/authn"
)

// CostLimit bounds one evaluation of a condition that holds a comprehension
// (CEL's runtime cost units: roughly one per operation, one per element a
// comprehension visits). It stops a condition such as a nested all/exists
// from turning a large claim into a CPU sink: hitting it denies with
// condition_error. Conditions without comprehensions are linear in their
// inputs and run without cost tracking (see compileCondition).
const CostLimit = 10_000

// The variables' CEL types. They are declared as structs rather than
// map(string, dyn) so the checker catches misuse such as
// principal.scopes + 1 or a misspelt field at config load.
const (
	principalTypeName = "gatehouse.Principal"
	requestTypeName   = "gatehouse.Request"
)

var (
	principalType = types.NewObjectType(principalTypeName)
	requestType   = types.NewObjectType(requestTypeName)
	stringMapType = types.NewMapType(types.StringType, types.StringType)
)

// field declares one field of a variable's type with its getter over the
// Go value the activation hands out.
type field struct {
	typ   *types.Type
	get   func(any) any
	isSet func(any) bool
}

func principalOf(v any) *authn.Principal {
	if p, ok := v.(*authn.Principal); ok && p != nil {
		return p
	}
	return &emptyPrincipal
}

var emptyPrincipal authn.Principal

func inputOf(v any) *Input {
	if in, ok := v.(*Input); ok && in != nil {
		return in
	}
	return &emptyInput
}

func strField(get func(any) string) field {
	return field{
		typ:   types.StringType,
		get:   func(v any) any { return types.String(get(v)) },
		isSet: func(v any) bool { return get(v) != "" },
	}
}

var principalFields = map[string]field{
	"consumer":      strField(func(v any) string { return principalOf(v).Consumer }),
	"partner":       strField(func(v any) string { return principalOf(v).Partner }),
	"kind":          strField(func(v any) string { return principalOf(v).Kind }),
	"subject":       strField(func(v any) string { return principalOf(v).Subject }),
	"issuer":        strField(func(v any) string { return principalOf(v).Issuer }),
	"credential_id": strField(func(v any) string { return principalOf(v).CredentialID }),
	"scopes": {
		typ:   types.NewListType(types.StringType),
		get:   func(v any) any { return principalOf(v).Scopes },
		isSet: func(v any) bool { return len(principalOf(v).Scopes) > 0 },
	},
	"roles": {
		typ:   types.NewListType(types.StringType),
		get:   func(v any) any { return principalOf(v).Roles },
		isSet: func(v any) bool { return len(principalOf(v).Roles) > 0 },
	},
	"claims": {
		typ:   types.NewMapType(types.StringType, types.DynType),
		get:   func(v any) any { return principalOf(v).Claims },
		isSet: func(v any) bool { return len(principalOf(v).Claims) > 0 },
	},
}

var requestFields = map[string]field{
	"method":    strField(func(v any) string { return inputOf(v).Method }),
	"operation": strField(func(v any) string { return inputOf(v).Operation }),
	"client_ip": strField(func(v any) string { return inputOf(v).ClientIP }),
	"path": {
		typ:   stringMapType,
		get:   func(v any) any { return inputOf(v).PathParams },
		isSet: func(v any) bool { return len(inputOf(v).PathParams) > 0 },
	},
	"query": {
		typ:   stringMapType,
		get:   func(v any) any { return &firstValueMap{m: inputOf(v).Query} },
		isSet: func(v any) bool { return len(inputOf(v).Query) > 0 },
	},
	"headers": {
		typ:   stringMapType,
		get:   func(v any) any { return &firstValueMap{m: inputOf(v).Header, header: true} },
		isSet: func(v any) bool { return len(inputOf(v).Header) > 0 },
	},
	"time": {
		typ: types.TimestampType,
		get: func(v any) any {
			t := inputOf(v).Time
			if t.IsZero() {
				t = time.Now()
			}
			return types.Timestamp{Time: t}
		},
		isSet: func(any) bool { return true },
	},
}

// structDef is one variable type as the type provider describes it.
type structDef struct {
	typ    *types.Type
	fields map[string]*types.FieldType
	names  []string
}

func newStructDef(typ *types.Type, fs map[string]field) *structDef {
	d := &structDef{typ: typ, fields: map[string]*types.FieldType{}}
	for name, f := range fs {
		d.fields[name] = &types.FieldType{
			Type:    f.typ,
			IsSet:   f.isSet,
			GetFrom: func(v any) (any, error) { return f.get(v), nil },
		}
		d.names = append(d.names, name)
	}
	slices.Sort(d.names)
	return d
}

// provider adds the two variable types to CEL's standard provider.
type provider struct {
	types.Provider
	structs map[string]*structDef
}

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if d, ok := p.structs[name]; ok {
		return types.NewTypeTypeWithParam(d.typ), true
	}
	return p.Provider.FindStructType(name)
}

func (p *provider) FindIdent(name string) (ref.Val, bool) {
	if d, ok := p.structs[name]; ok {
		return d.typ, true
	}
	return p.Provider.FindIdent(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if d, ok := p.structs[name]; ok {
		return d.names, true
	}
	return p.Provider.FindStructFieldNames(name)
}

func (p *provider) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	if d, ok := p.structs[name]; ok {
		ft, ok := d.fields[fieldName]
		return ft, ok
	}
	return p.Provider.FindStructFieldType(name, fieldName)
}

func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.structs[name]; ok {
		return types.NewErr("%s cannot be constructed in a condition", name)
	}
	return p.Provider.NewValue(name, fields)
}

// adapter turns the activation's Go values into CEL values when a
// condition uses a variable whole (type(principal), principal == …).
type adapter struct{ types.Adapter }

func (a adapter) NativeToValue(v any) ref.Val {
	switch v := v.(type) {
	case *authn.Principal:
		return objectVal{typ: principalType, v: v}
	case *Input:
		return objectVal{typ: requestType, v: v}
	}
	return a.Adapter.NativeToValue(v)
}

// objectVal is a variable used whole. Field access does not go through it:
// the planner reads fields straight from the Go value with the getters.
type objectVal struct {
	typ *types.Type
	v   any
}

func (o objectVal) ConvertToNative(t reflect.Type) (any, error) {
	if reflect.TypeOf(o.v).AssignableTo(t) {
		return o.v, nil
	}
	return nil, fmt.Errorf("%s cannot be converted to %v", o.typ.TypeName(), t)
}

func (o objectVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return o.typ
	}
	return types.NewErr("%s cannot be converted to %s", o.typ.TypeName(), t.TypeName())
}

func (o objectVal) Equal(other ref.Val) ref.Val {
	ov, ok := other.(objectVal)
	return types.Bool(ok && ov.v == o.v)
}

func (o objectVal) Type() ref.Type { return o.typ }
func (o objectVal) Value() any     { return o.v }

// activation hands the evaluator the principal and the input as they are;
// nothing is converted unless a condition reads it.
type activation struct {
	p  *authn.Principal
	in *Input
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "principal":
		return a.p, true
	case "request":
		return a.in, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// firstValueMap shows url.Values or http.Header to CEL as map(string,
// string) of first values, looked up in place instead of copied per request.
// Header names are lower-case in CEL and canonical in http.Header.
type firstValueMap struct {
	m      map[string][]string
	header bool
}

var _ traits.Mapper = (*firstValueMap)(nil)

func (f *firstValueMap) key(k string) string {
	if f.header {
		return textproto.CanonicalMIMEHeaderKey(k)
	}
	return k
}

func (f *firstValueMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	vs := f.m[f.key(string(k))]
	if len(vs) == 0 {
		return nil, false
	}
	return types.String(vs[0]), true
}

func (f *firstValueMap) Get(key ref.Val) ref.Val {
	v, ok := f.Find(key)
	if !ok {
		if v != nil {
			return v
		}
		return types.NewErr("no such key: %v", key)
	}
	return v
}

func (f *firstValueMap) Contains(key ref.Val) ref.Val {
	v, ok := f.Find(key)
	if !ok && v != nil {
		return v
	}
	return types.Bool(ok)
}

func (f *firstValueMap) Size() ref.Val { return types.Int(len(f.m)) }

// materialize copies the map, for the rare operations that need all of it
// (iteration, equality, conversion).
func (f *firstValueMap) materialize() traits.Mapper {
	out := make(map[string]string, len(f.m))
	for k, vs := range f.m {
		if len(vs) == 0 {
			continue
		}
		if f.header {
			k = strings.ToLower(k)
		}
		out[k] = vs[0]
	}
	return types.NewStringStringMap(types.DefaultTypeAdapter, out)
}

func (f *firstValueMap) Iterator() traits.Iterator { return f.materialize().Iterator() }
func (f *firstValueMap) Equal(o ref.Val) ref.Val   { return f.materialize().Equal(o) }
func (f *firstValueMap) ConvertToType(t ref.Type) ref.Val {
	return f.materialize().ConvertToType(t)
}
func (f *firstValueMap) ConvertToNative(t reflect.Type) (any, error) {
	return f.materialize().ConvertToNative(t)
}
func (f *firstValueMap) Type() ref.Type { return types.MapType }
func (f *firstValueMap) Value() any     { return f.materialize().Value() }

// conditionEnv is built once: creating a CEL environment costs
// milliseconds, and it is safe for concurrent use.
var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		// The standard library and its macros (has, all, exists,
		// exists_one, map, filter) only: no extension functions.
		func(e *cel.Env) (*cel.Env, error) {
			p := &provider{Provider: e.CELTypeProvider(), structs: map[string]*structDef{
				principalTypeName: newStructDef(principalType, principalFields),
				requestTypeName:   newStructDef(requestType, requestFields),
			}}
			e, err := cel.CustomTypeProvider(p)(e)
			if err != nil {
				return nil, err
			}
			return cel.CustomTypeAdapter(adapter{e.CELTypeAdapter()})(e)
		},
		cel.Variable("principal", principalType),
		cel.Variable("request", requestType),
	)
})

// compileCondition parses, type-checks and plans one when expression.
func compileCondition(env *cel.Env, src, ptr string) (cel.Program, []Problem) {
	if len(src) > maxConditionLen {
		return nil, []Problem{{Pointer: ptr, Message: fmt.Sprintf("condition is longer than %d characters", maxConditionLen)}}
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		multiline := strings.Contains(strings.TrimRight(src, "\n"), "\n")
		var probs []Problem
		for _, e := range iss.Errors() {
			line, col := e.Location.Line(), e.Location.Column()+1
			where := fmt.Sprintf("column %d", col)
			if multiline {
				where = fmt.Sprintf("line %d, column %d", line, col)
			}
			probs = append(probs, Problem{
				Pointer: ptr, Line: line, Column: col,
				Message: fmt.Sprintf("condition does not compile at %s: %s%s", where, e.Message, caret(src, line, col)),
			})
		}
		return nil, probs
	}
	if id, found := findStructLiteral(ast.NativeRep().Expr()); found {
		loc := ast.NativeRep().SourceInfo().GetStartLocation(id)
		return nil, []Problem{{Pointer: ptr, Line: loc.Line(), Column: loc.Column() + 1,
			Message: "conditions cannot construct objects: compare fields instead (e.g. principal.consumer == 'x')"}}
	}
	if out := ast.OutputType(); !out.IsExactType(types.BoolType) && !out.IsExactType(types.DynType) {
		return nil, []Problem{{Pointer: ptr, Message: fmt.Sprintf("condition must be a boolean expression, not %s", out)}}
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if hasKind(ast.NativeRep().Expr(), celast.ComprehensionKind) {
		// Only comprehensions (all, exists, exists_one, map, filter) can
		// make evaluation cost grow faster than the inputs. Without one,
		// a condition's cost is linear in its inputs, which the
		// listener's header and token size limits bound, and cost
		// tracking (several allocations and ~1 µs per evaluation) buys
		// nothing.
		opts = append(opts, cel.CostLimit(CostLimit))
	}
	prog, err := env.Program(ast, opts...)
	if err != nil {
		return nil, []Problem{{Pointer: ptr, Message: "condition cannot be planned: " + err.Error()}}
	}
	return prog, nil
}

// findStructLiteral returns the ID of the first object construction
// (T{field: value}) in e, if any.
func findStructLiteral(e celast.Expr) (int64, bool) {
	var id int64
	found := false
	celast.PostOrderVisit(e, celast.NewExprVisitor(func(x celast.Expr) {
		if !found && x.Kind() == celast.StructKind {
			id, found = x.ID(), true
		}
	}))
	return id, found
}

// hasKind reports whether e contains a node of kind k.
func hasKind(e celast.Expr, k celast.ExprKind) bool {
	found := false
	celast.PostOrderVisit(e, celast.NewExprVisitor(func(x celast.Expr) {
		found = found || x.Kind() == k
	}))
	return found
}

// caret shows the offending line with a marker under col, the way CEL and
// compilers do, when the line is short enough to read.
func caret(src string, line, col int) string {
	lines := strings.Split(src, "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	l := lines[line-1]
	if len(l) > maxConditionDisplayWidth || col < 1 || col > len(l)+1 {
		return ""
	}
	return "\n  | " + l + "\n  | " + strings.Repeat(".", col-1) + "^"
}
