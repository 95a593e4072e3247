package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/authn"
	"github.com/gatehouse/gatehouse/internal/authn/apikey"
	"github.com/gatehouse/gatehouse/internal/authn/introspect"
	"github.com/gatehouse/gatehouse/internal/authn/jwt"
	"github.com/gatehouse/gatehouse/internal/authn/mtls"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/revoke"
	"github.com/gatehouse/gatehouse/internal/store"
)

// retireGrace is how long a replaced identity component (a JWKS refresher,
// an API key last-used writer) keeps running after a reload, so requests
// that started on the old Runtime finish with it intact.
const retireGrace = 30 * time.Second

// Identity owns the long-lived identity machinery that Runtimes share:
// JWKS verifiers with their background refresh, introspection caches, the
// API key service and its last-used writer, the token endpoint's key ring.
// A reload rebuilds only what its config changed.
type Identity struct {
	ctx         context.Context
	store       store.Store  // nil when only validating a config
	revocations *revoke.List // nil: no revocation checks (validation)
	log         *slog.Logger

	mu        sync.Mutex
	verifiers map[string]*jwtEntry
	intros    map[string]*introEntry
	keys      *apikey.Service
	keyAuth   *apikey.Authenticator
	keyCfg    config.Identity
}

type jwtEntry struct {
	cfg config.Issuer
	v   *jwt.Verifier
}

type introEntry struct {
	cfg config.Introspection
	a   *introspect.Authenticator
}

// IdentityDeps are what live identity checks need. A Gateway without them
// (config validation) compiles identity config but checks no credential.
type IdentityDeps struct {
	Ctx         context.Context
	Store       store.Store
	Revocations *revoke.List
}

// SetIdentity gives the gateway its store and revocation list; call it
// before the first Compile of a serving process.
func (g *Gateway) SetIdentity(d IdentityDeps) {
	if d.Ctx == nil {
		d.Ctx = context.Background()
	}
	g.id = &Identity{ctx: d.Ctx, store: d.Store, revocations: d.Revocations, log: g.log,
		verifiers: map[string]*jwtEntry{}, intros: map[string]*introEntry{}}
}

// Keys returns the API key service (nil when no pepper is configured or the
// gateway has no store).
func (g *Gateway) Keys() *apikey.Service {
	g.id.mu.Lock()
	defer g.id.mu.Unlock()
	return g.id.keys
}

// apiAuth is the compiled authentication of one API.
type apiAuth struct {
	chain       authn.Chain
	challenge   string   // WWW-Authenticate value when no credential was sent
	schemes     []string // the chain's schemes
	requireMTLS bool
	boundTokens bool
	mtls        *mtls.Authenticator
}

// identitySet is what one Runtime uses.
type identitySet struct {
	mtls        *mtls.Authenticator
	keyAuth     *apikey.Authenticator
	keys        *apikey.Service
	jwt         map[string]*jwt.Verifier
	intro       map[string]*introspect.Authenticator
	token       *oauth.Server
	tokenVerify *oauth.Verifier
	revocations *revoke.List
}

// buildIdentity prepares the authenticators cfg names, reusing unchanged
// ones. Problems go to rep.
func (g *Gateway) buildIdentity(cfg *config.Config, rep *config.Reporter) *identitySet {
	id := g.id
	id.mu.Lock()
	defer id.mu.Unlock()
	set := &identitySet{jwt: map[string]*jwt.Verifier{}, intro: map[string]*introspect.Authenticator{}, revocations: id.revocations}

	var err error
	if set.mtls, err = mtls.New(cfg.Partners, cfg.Consumers); err != nil {
		rep.Errorf("/partners", "%v", err)
	}

	for i, is := range cfg.Issuers {
		if e, ok := id.verifiers[is.Name]; ok && reflect.DeepEqual(e.cfg, is) {
			set.jwt[is.Name] = e.v
			continue
		}
		v, err := jwt.New(is, jwt.WithLogger(g.log))
		if err != nil {
			rep.Errorf(fmt.Sprintf("/issuers/%d", i), "%v", err)
			continue
		}
		set.jwt[is.Name] = v
	}
	for i, in := range cfg.Introspection {
		if e, ok := id.intros[in.Name]; ok && reflect.DeepEqual(e.cfg, in) {
			set.intro[in.Name] = e.a
			continue
		}
		a, err := introspect.New(in, introspect.WithLogger(g.log))
		if err != nil {
			rep.Errorf(fmt.Sprintf("/introspection/%d", i), "%v", err)
			continue
		}
		set.intro[in.Name] = a
	}

	pepper := cfg.Identity.Pepper != "" || cfg.Identity.PepperFile != ""
	if pepper {
		if _, err := apikey.LoadPepper(cfg.Identity); err != nil {
			rep.Errorf("/identity", "%v", err)
		}
	}
	if pepper && id.store != nil && len(rep.Problems.Errors()) == 0 {
		if id.keys != nil && reflect.DeepEqual(id.keyCfg, cfg.Identity) {
			set.keyAuth, set.keys = id.keyAuth, id.keys
		} else if svc, err := apikey.ServiceFromConfig(cfg, id.store, revoker(id)); err != nil {
			rep.Errorf("/identity", "%v", err)
		} else if a, err := svc.NewAuthenticator(apikey.AuthOptions{Log: g.log, ClientIP: clientIPOf}); err != nil {
			rep.Errorf("/identity", "%v", err)
		} else {
			set.keyAuth, set.keys = a, svc
		}
	}

	if cfg.TokenEndpoint.Enabled {
		var secrets oauth.ClientSecrets
		if set.keyAuth != nil {
			secrets = clientSecrets{auth: set.keyAuth, revocations: id.revocations}
		}
		srv, err := oauth.NewServer(cfg.TokenEndpoint, cfg.Consumers, oauth.Options{Secrets: secrets, Certs: set.mtls, Log: g.log})
		if err != nil {
			rep.Errorf("/token_endpoint", "%v", err)
		} else {
			set.token = srv
			set.tokenVerify = oauth.NewVerifier(cfg.TokenEndpoint, srv.Ring(), cfg.Consumers, nil)
		}
	}
	return set
}

func revoker(id *Identity) apikey.Revoker {
	if id.revocations != nil {
		return id.revocations
	}
	return nil
}

// commitIdentity makes set the live one after its Runtime was swapped in:
// new verifiers start refreshing, replaced components retire after a grace.
func (g *Gateway) commitIdentity(cfg *config.Config, set *identitySet) {
	id := g.id
	id.mu.Lock()
	defer id.mu.Unlock()
	var retire []func() error
	for i := range cfg.Issuers {
		is := cfg.Issuers[i]
		v := set.jwt[is.Name]
		if e, ok := id.verifiers[is.Name]; ok {
			if e.v == v {
				continue
			}
			retire = append(retire, e.v.Close)
		}
		id.verifiers[is.Name] = &jwtEntry{cfg: is, v: v}
		if id.store != nil { // serving, not validating: fetch keys now
			go func() { _ = v.Start(id.ctx) }()
		}
	}
	for name, e := range id.verifiers {
		if set.jwt[name] == nil {
			retire = append(retire, e.v.Close)
			delete(id.verifiers, name)
		}
	}
	id.intros = map[string]*introEntry{}
	for _, in := range cfg.Introspection {
		id.intros[in.Name] = &introEntry{cfg: in, a: set.intro[in.Name]}
	}
	if set.keyAuth != id.keyAuth {
		if id.keyAuth != nil {
			retire = append(retire, id.keyAuth.Close)
		}
		id.keyAuth, id.keys = set.keyAuth, set.keys
		id.keyCfg = cfg.Identity
	}
	if id.keys != nil {
		id.keys.Reconfigure(cfg.Consumers, cfg.Identity.KeyMaxTTL.D())
	}
	if len(retire) > 0 {
		time.AfterFunc(retireGrace, func() {
			for _, f := range retire {
				_ = f()
			}
		})
	}
}

// apiAuthFor compiles one API's authentication.
func apiAuthFor(a config.API, set *identitySet) *apiAuth {
	aa := &apiAuth{requireMTLS: a.RequireMTLS, boundTokens: a.BoundTokens, mtls: set.mtls}
	var jwts []*jwt.Verifier
	var late authn.Chain // introspection owns any Bearer token: try it last
	jwtAt := -1
	for _, m := range a.Auth {
		kind, name, _ := strings.Cut(m, ":")
		switch kind {
		case "apikey":
			if set.keyAuth != nil {
				aa.chain = append(aa.chain, set.keyAuth)
			}
		case "jwt":
			if v := set.jwt[name]; v != nil {
				if jwtAt < 0 {
					jwtAt = len(aa.chain)
					aa.chain = append(aa.chain, nil) // placeholder
				}
				jwts = append(jwts, v)
			}
		case "introspect":
			if ia := set.intro[name]; ia != nil {
				late = append(late, ia)
			}
		case "token":
			if set.tokenVerify != nil {
				aa.chain = append(aa.chain, set.tokenVerify)
			}
		case "mtls":
			if set.mtls != nil {
				aa.chain = append(aa.chain, set.mtls)
			}
		}
	}
	if jwtAt >= 0 {
		if ja, err := jwt.NewAuthenticator(jwts...); err == nil {
			aa.chain[jwtAt] = ja
		} else {
			aa.chain = append(aa.chain[:jwtAt], aa.chain[jwtAt+1:]...)
		}
	}
	aa.chain = append(aa.chain, late...)
	aa.schemes = aa.chain.Schemes()
	var ch []string
	for _, s := range aa.schemes {
		ch = append(ch, s+` realm="gatehouse"`)
	}
	aa.challenge = strings.Join(ch, ", ")
	return aa
}

// clientIPOf is the trusted-proxy-aware client address of a request in the
// pipeline (set as X-Real-Ip after the client's copy was stripped),
// recorded as an API key's last source.
func clientIPOf(r *http.Request) string {
	if v := r.Header["X-Real-Ip"]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// clientSecrets lets consumers authenticate at the token endpoint with one
// of their API keys as client secret: the same hashed, revocable, expiring
// credential, with no second secret store to secure.
type clientSecrets struct {
	auth        *apikey.Authenticator
	revocations *revoke.List
}

func (c clientSecrets) VerifyClientSecret(ctx context.Context, consumer, secret string) (string, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/", nil)
	if err != nil {
		return "", err
	}
	r.Header.Set("X-API-Key", secret)
	p, err := c.auth.Authenticate(r)
	if err != nil {
		if errors.Is(err, authn.ErrNoCredential) {
			return "", authn.Fail("Basic", "no_secret")
		}
		return "", err
	}
	if p.Consumer != consumer {
		return "", authn.Fail("Basic", "secret_of_other_client")
	}
	if c.revocations != nil {
		if revoked, _ := c.revocations.Revoked(p); revoked {
			return "", authn.Fail("Basic", "revoked")
		}
	}
	return p.CredentialID, nil
}
