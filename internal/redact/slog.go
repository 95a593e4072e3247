package redact

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// Handler is an slog.Handler that redacts every record before the wrapped
// handler sees it: the message, every string attribute, errors,
// fmt.Stringers, headers, URLs and byte slices, inside groups too.
// Attributes named like secrets ("password", "authorization", "api_key"…)
// are replaced whole. The Redactor can be swapped at run time (config
// reload); handlers derived with WithAttrs/WithGroup share it.
type Handler struct {
	inner slog.Handler
	r     *atomic.Pointer[Redactor]
}

// NewHandler wraps inner with r (Default() when nil).
func NewHandler(inner slog.Handler, r *Redactor) *Handler {
	if r == nil {
		r = Default()
	}
	p := &atomic.Pointer[Redactor]{}
	p.Store(r)
	return &Handler{inner: inner, r: p}
}

// SetRedactor swaps the Redactor for this handler and all derived ones.
func (h *Handler) SetRedactor(r *Redactor) {
	if r != nil {
		h.r.Store(r)
	}
}

// Redactor returns the Redactor in use.
func (h *Handler) Redactor() *Redactor { return h.r.Load() }

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, rec slog.Record) error {
	r := h.r.Load()
	out := slog.NewRecord(rec.Time, rec.Level, r.Text(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(r.Attr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

// WithAttrs implements slog.Handler; the attributes are redacted now, with
// the Redactor of the moment (the always-on rules never change).
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	r := h.r.Load()
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = r.Attr(a)
	}
	return &Handler{inner: h.inner.WithAttrs(red), r: h.r}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), r: h.r}
}

// secretAttrKeys are log attribute keys whose whole value is a secret.
// Narrower than IsSecretName: "key" or "code" as an attribute usually
// name a rate-limit key or a status code, not a credential.
var secretAttrKeys = map[string]bool{
	"password": true, "passwd": true, "secret": true, "client_secret": true, "token": true,
	"access_token": true, "refresh_token": true, "id_token": true, "api_key": true, "apikey": true,
	"authorization": true, "proxy_authorization": true, "cookie": true, "set_cookie": true,
	"pepper": true, "private_key": true, "bearer": true, "jwt": true, "session": true,
}

// Attr redacts one log attribute.
func (r *Redactor) Attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if secretAttrKeys[strings.ToLower(a.Key)] && v.Kind() != slog.KindGroup {
		return slog.String(a.Key, r.Mark(KindSecret, v.String()))
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, r.Text(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]slog.Attr, len(g))
		for i, ga := range g {
			red[i] = r.Attr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, r.Text(x.Error()))
		case http.Header:
			return slog.Any(a.Key, r.Header(x))
		case *url.URL:
			if x == nil {
				return a
			}
			return slog.String(a.Key, r.URL(x.String()))
		case url.Values:
			return slog.String(a.Key, r.Query(x.Encode()))
		case []byte:
			return slog.String(a.Key, r.Text(string(x)))
		case fmt.Stringer:
			return slog.String(a.Key, r.Text(x.String()))
		case []string:
			out := make([]string, len(x))
			for i, s := range x {
				out[i] = r.Text(s)
			}
			return slog.Any(a.Key, out)
		default:
			// Structs, maps, slices: what the handler would print is what
			// must be clean. Keep the original when nothing is found, so
			// JSON handlers still render it structured.
			s := fmt.Sprintf("%+v", x)
			if r.Contains(s) {
				return slog.String(a.Key, r.Text(s))
			}
			return slog.Attr{Key: a.Key, Value: v}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
