package dashboard

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
)

// Prefix is the path the dashboard is served under.
const Prefix = "/ui/"

//go:embed assets
var assets embed.FS

// Gateway is what the dashboard reads of a node's gateway: its accounts,
// each one's functions, endpoints and tasks, and its invoices.
// *gateway.Gateway implements it.
type Gateway interface {
	ListAccounts(ctx context.Context) ([]gateway.Account, error)
	As(ctx context.Context, account string) (gateway.Service, error)
	Invoices(ctx context.Context, account string) ([]gateway.InvoiceSummary, error)
}

// Config is what a Dashboard shows and whom it lets in.
type Config struct {
	Service api.Service // the node; required
	Gateway Gateway     // nil: the node has no gateway, its pages say so
	// Token is the API's token: the login form takes it, and POST
	// /ui/codes wants it as a bearer token. Empty: no one gets in.
	Token string
	// Clock tells the time of sessions and codes; nil: time.Now.
	Clock func() time.Time
	// Poll is how often an open page whose data has no watch (lists, the
	// node, its peers) is read again; 0: one second.
	Poll   time.Duration
	Logger *slog.Logger // nil: discard
}

// Dashboard serves the web dashboard under Prefix. It is safe for
// concurrent use.
type Dashboard struct {
	svc     api.Service
	gw      Gateway
	token   []byte
	poll    time.Duration
	log     *slog.Logger
	secrets *secrets
	pages   map[string]*page
	loginT  *template.Template
	mux     *http.ServeMux
}

var _ http.Handler = (*Dashboard)(nil)

// New returns the dashboard c describes.
func New(c Config) (*Dashboard, error) {
	if c.Service == nil {
		return nil, ErrNoService
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{
		svc: c.Service, gw: c.Gateway, token: []byte(c.Token), poll: c.Poll, log: c.Logger,
		secrets: newSecrets(c.Clock),
	}
	if err := d.parse(); err != nil {
		return nil, err
	}
	d.mux = d.routes()
	return d, nil
}

func (d *Dashboard) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets/static") // the embedded tree has it
	mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.FileServerFS(static)))
	mux.HandleFunc("GET "+Prefix+"login", d.serveLogin)
	mux.HandleFunc("POST "+Prefix+"login", d.serveLogin)
	mux.HandleFunc("POST "+Prefix+"logout", d.logout)
	mux.HandleFunc("POST "+Prefix+"codes", d.code)
	mux.HandleFunc("GET "+Prefix+"events", d.authed(d.events))
	for _, p := range d.pages {
		mux.HandleFunc("GET "+p.pattern, d.authed(d.servePage(p)))
	}
	return mux
}

// ServeHTTP serves r with the dashboard's security headers: a strict
// content security policy (scripts, styles and everything else from the
// dashboard only, no inline script, no framing), and no caching.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	d.mux.ServeHTTP(w, r)
}

// csp is the dashboard's Content-Security-Policy.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
