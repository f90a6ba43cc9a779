package dashboard

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"time"

	"github.com/opendms/dms/dms/api"
)

// page is one page of the dashboard: where it is served, how its data is
// read, and, for a page about one job, flow or batch, how to follow it.
type page struct {
	key     string // names it in /ui/events?page=
	pattern string // its route
	nav     string // the section of the menu it belongs to
	title   string
	tmpl    *template.Template
	load    func(ctx context.Context, id string) (any, error)
	// watch signals each change of what the page shows; nil: the page is
	// read again every Config.Poll while it is open.
	watch func(ctx context.Context, id string) (<-chan struct{}, error)
}

// section is an entry of the menu.
type section struct{ Key, Title, Path string }

var sections = []section{
	{"node", "Node", Prefix},
	{"peers", "Peers", Prefix + "peers"},
	{"jobs", "Jobs", Prefix + "jobs"},
	{"flows", "Flows", Prefix + "flows"},
	{"batches", "Batches", Prefix + "batches"},
	{"gateway", "Functions", Prefix + "gateway"},
	{"invoices", "Invoices", Prefix + "invoices"},
}

// view is what a page's template is given.
type view struct {
	Title    string
	Nav      string
	Sections []section
	Live     string // the URL of the page's event stream
	Data     any
}

// pageList is every page; parse gives each its template.
func (d *Dashboard) pageList() []*page {
	return []*page{
		{key: "node", pattern: Prefix + "{$}", nav: "node", title: "Node", load: d.nodeView},
		{key: "peers", pattern: Prefix + "peers", nav: "peers", title: "Peers", load: d.peersView},
		{key: "jobs", pattern: Prefix + "jobs", nav: "jobs", title: "Jobs", load: d.jobsView},
		{key: "job", pattern: Prefix + "jobs/{id}", nav: "jobs", title: "Job", load: d.jobView, watch: watchOf(d.svc.WatchJob)},
		{key: "flows", pattern: Prefix + "flows", nav: "flows", title: "Flows", load: d.flowsView},
		{key: "flow", pattern: Prefix + "flows/{id}", nav: "flows", title: "Flow", load: d.flowView, watch: watchOf(d.svc.WatchFlow)},
		{key: "batches", pattern: Prefix + "batches", nav: "batches", title: "Batches", load: d.batchesView},
		{key: "gateway", pattern: Prefix + "gateway", nav: "gateway", title: "Functions, endpoints and tasks", load: d.gatewayView},
		{key: "invoices", pattern: Prefix + "invoices", nav: "invoices", title: "Invoices", load: d.invoicesView},
	}
}

// parse reads the embedded templates.
func (d *Dashboard) parse() error {
	d.pages = map[string]*page{}
	for _, p := range d.pageList() {
		t, err := template.New(p.key).Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/"+p.key+".html")
		if err != nil {
			return err
		}
		p.tmpl = t
		d.pages[p.key] = p
	}
	t, err := template.New("login").Funcs(funcs).ParseFS(assets, "assets/login.html")
	if err != nil {
		return err
	}
	d.loginT = t
	return nil
}

// servePage serves a whole page.
func (d *Dashboard) servePage(p *page) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		data, err := p.load(r.Context(), id)
		if err != nil {
			d.fail(w, r, err)
			return
		}
		v := view{Title: p.title, Nav: p.nav, Sections: sections, Live: liveURL(p.key, id), Data: data}
		if id != "" {
			v.Title += " " + id
		}
		d.write(w, http.StatusOK, p.tmpl, "layout", v)
	}
}

// liveURL is the event stream of a page.
func liveURL(key, id string) string {
	q := url.Values{"page": {key}}
	if id != "" {
		q.Set("id", id)
	}
	return Prefix + "events?" + q.Encode()
}

// write renders a template of t, whole, and sends it.
func (d *Dashboard) write(w http.ResponseWriter, status int, t *template.Template, name string, data any) {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, data); err != nil {
		d.log.Error("dashboard: rendering", "template", name, "error", err)
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fail answers a page that cannot be read: 404 for what does not exist,
// 500 for the rest, as plain text (never echoing markup).
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, api.ErrNotFound) {
		status = http.StatusNotFound
	}
	d.log.Debug("dashboard: page", "path", r.URL.Path, "error", err)
	http.Error(w, err.Error(), status)
}

// renderLogin serves the login form, with a message when there is one.
func (d *Dashboard) renderLogin(w http.ResponseWriter, status int, msg string) {
	d.write(w, status, d.loginT, "login", msg)
}

// watchOf turns a Service's watch into a signal per change. The signal's
// channel holds one change at most (changes coalesce: the page is read
// anew anyway) and closes when the watch ends.
func watchOf[T any](watch func(context.Context, string) (<-chan T, error)) func(context.Context, string) (<-chan struct{}, error) {
	return func(ctx context.Context, id string) (<-chan struct{}, error) {
		events, err := watch(ctx, id)
		if err != nil {
			return nil, err
		}
		out := make(chan struct{}, 1)
		go func() { // ends when the watch does: at its end, or when ctx is done
			defer close(out)
			for range events {
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}()
		return out, nil
	}
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"short": short,
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ms": func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() },
}

// short abbreviates a peer ID or a job ID to its last 8 characters, which
// tell peers apart on a small screen; the page keeps the whole in a title.
func short(id string) string {
	if len(id) <= 10 {
		return id
	}
	return "…" + id[len(id)-8:]
}
