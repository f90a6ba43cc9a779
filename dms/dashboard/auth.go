package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/opendms/dms/dms/api"
)

// The lifetimes of what the dashboard hands out, and how many may be live.
const (
	// SessionTTL is how long a session cookie lets a browser in.
	SessionTTL = 12 * time.Hour
	// CodeTTL is how long a one-time code printed by `dms dashboard` may
	// be exchanged for a session.
	CodeTTL = time.Minute
	// maxLive bounds the sessions and the codes kept, each: past it a new
	// one is refused until some expire.
	maxLive = 1024
)

// cookieName is the session cookie's name.
const cookieName = "dms_session"

// secrets keeps the live sessions and one-time codes, each by the SHA-256
// of its value with its expiry: the values themselves are only ever in the
// browser's cookie or the printed link. Safe for concurrent use.
type secrets struct {
	mu       sync.Mutex
	now      func() time.Time
	sessions map[[32]byte]time.Time
	codes    map[[32]byte]time.Time
}

func newSecrets(now func() time.Time) *secrets {
	return &secrets{now: now, sessions: map[[32]byte]time.Time{}, codes: map[[32]byte]time.Time{}}
}

// newSecret returns 32 random bytes, base64url without padding.
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// issue makes a secret valid for ttl in set.
func (s *secrets) issue(set map[[32]byte]time.Time, ttl time.Duration) (string, time.Time, error) {
	v, err := newSecret()
	if err != nil {
		return "", time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	prune(set, now)
	if len(set) >= maxLive {
		return "", time.Time{}, errTooMany
	}
	exp := now.Add(ttl)
	set[sha256.Sum256([]byte(v))] = exp
	return v, exp, nil
}

// prune drops what expired.
func prune(set map[[32]byte]time.Time, now time.Time) {
	for k, exp := range set {
		if !now.Before(exp) {
			delete(set, k)
		}
	}
}

// newSession starts a session and returns its cookie value.
func (s *secrets) newSession() (string, time.Time, error) {
	return s.issue(s.sessions, SessionTTL)
}

// newCode returns a one-time code.
func (s *secrets) newCode() (string, time.Time, error) {
	return s.issue(s.codes, CodeTTL)
}

// valid reports whether session is live.
func (s *secrets) valid(session string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.sessions[sha256.Sum256([]byte(session))]
	return ok && s.now().Before(exp)
}

// endSession forgets a session.
func (s *secrets) endSession(session string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sha256.Sum256([]byte(session)))
}

// redeem spends a code: true once, if it is live; never again.
func (s *secrets) redeem(code string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := sha256.Sum256([]byte(code))
	exp, ok := s.codes[k]
	delete(s.codes, k)
	return ok && s.now().Before(exp)
}

// tokenOK compares a token typed in the login form with the API's in
// constant time; an empty API token matches nothing.
func (d *Dashboard) tokenOK(got string) bool {
	return len(d.token) > 0 && subtle.ConstantTimeCompare([]byte(got), d.token) == 1
}

// session reports whether r carries a live session cookie.
func (d *Dashboard) session(r *http.Request) bool {
	c, err := r.Cookie(cookieName)
	return err == nil && d.secrets.valid(c.Value)
}

// authed serves next to a request with a live session; it sends any other
// to the login form (a page) or answers 401 (the event stream).
func (d *Dashboard) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.session(r) {
			next(w, r)
			return
		}
		if r.URL.Path == Prefix+"events" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
	}
}

// serveLogin serves the login form (GET, or GET ?code= from a one-time link)
// and its submission (POST, the API token).
func (d *Dashboard) serveLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		code := r.URL.Query().Get("code")
		if code == "" {
			d.renderLogin(w, http.StatusOK, "")
			return
		}
		if !d.secrets.redeem(code) {
			d.renderLogin(w, http.StatusUnauthorized, "That link was used already or expired: run `dms dashboard` again, or log in with the token.")
			return
		}
		d.startSession(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if !d.tokenOK(r.PostFormValue("token")) {
		d.renderLogin(w, http.StatusUnauthorized, "Wrong token. It is the \"token\" in api.json in the node's home.")
		return
	}
	d.startSession(w, r)
}

// startSession sets a new session's cookie and sends the browser to the
// node's page, a URL without the code. The cookie lasts SessionTTL from
// its arrival (Max-Age), not until an instant of the node's clock
// (Expires), which a browser reads on its own clock: the two need not
// agree.
func (d *Dashboard) startSession(w http.ResponseWriter, r *http.Request) {
	v, _, err := d.secrets.newSession()
	if err != nil {
		http.Error(w, "cannot start a session: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: v, Path: Prefix, MaxAge: int(SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// logout ends the session and clears its cookie.
func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		d.secrets.endSession(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Path: Prefix, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// codeReply is the answer to POST /ui/codes.
type codeReply struct {
	Code      string    `json:"code"`
	Path      string    `json:"path"` // the link's path and query: /ui/login?code=...
	ExpiresAt time.Time `json:"expires_at"`
}

// code hands a one-time code to a caller with the API token (the CLI's
// `dms dashboard`), as a bearer token like the rest of the API.
func (d *Dashboard) code(w http.ResponseWriter, r *http.Request) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !d.tokenOK(got) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dms"`)
		api.WriteError(w, r, errUnauthorized, d.log)
		return
	}
	c, exp, err := d.secrets.newCode()
	if err != nil {
		api.WriteError(w, r, err, d.log)
		return
	}
	api.WriteJSON(w, http.StatusCreated, codeReply{Code: c, Path: Prefix + "login?code=" + c, ExpiresAt: exp})
}
