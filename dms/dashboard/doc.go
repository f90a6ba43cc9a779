// Package dashboard is the node's web dashboard: server-rendered pages
// (html/template) of the node, its peer graph, jobs, flows, batches, gateway
// and invoices, served under /ui/ on the local API's address, with one small
// script that follows a page's Server-Sent Events and swaps in its new
// rendering. Everything it serves is embedded (go:embed): nothing is fetched
// from elsewhere, by the server or the browser. docs/dashboard.md is the
// user's guide.
//
// # Security model
//
//   - A browser gets in with the API token, typed in the login form
//     (compared in constant time), or with a one-time code from POST
//     /ui/codes (which wants the token as a bearer token, as the API does;
//     `dms dashboard` prints it as a link). A code works once, within
//     CodeTTL. Either gives a session cookie (HttpOnly, SameSite=Strict,
//     Path=/ui/) and a redirect to a URL without secrets: the token is never
//     in a URL, a code only in the link it was printed in.
//   - Sessions and codes live in memory, kept by their SHA-256 only; a
//     restart logs everyone out.
//   - Every response carries a Content-Security-Policy that allows only the
//     dashboard's own script and style (no inline script), forbids framing,
//     and Cache-Control: no-store. Every name from the network (job, flow,
//     step, function and account names, peer IDs) reaches a page through
//     html/template, which escapes it.
//
// A Dashboard is read-only: it changes nothing of the node.
package dashboard
