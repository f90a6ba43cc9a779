package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// ServerConfig configures Serve.
type ServerConfig struct {
	// Addr is host:port to listen on; any address is allowed (this is the
	// public side), and port 0 picks one.
	Addr string
	// CertFile and KeyFile are a PEM certificate (chain) and its key: both
	// for HTTPS, neither for clear HTTP.
	CertFile, KeyFile string
	// Logger gets the server's own errors (failed TLS handshakes, broken
	// connections: a public listener sees many) at debug level; nil
	// discards them.
	Logger *slog.Logger
}

// Server timeouts and limits. There is no ReadTimeout or WriteTimeout: a
// call's body streams to its function and its answer may take as long as
// the revision's timeout (which the Gateway enforces), and a server-wide
// write deadline would cut long calls and large task results. Slow
// headers are bounded by ReadHeaderTimeout, JSON bodies by the handler's
// own read deadline, idle connections by IdleTimeout.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// Server serves the gateway's handler over HTTP/1.1 and HTTP/2: with TLS,
// h2 is chosen by ALPN; without, HTTP/2 is spoken to clients that start
// with it (h2c with prior knowledge). Close stops it.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	tls  bool
	done chan struct{} // closed when the serving goroutine returns
	err  error         // what Serve returned, read after done
}

// Serve listens on c.Addr and serves h in a goroutine. A certificate
// without its key (or the other way round), or a pair that does not load
// or match, is an error here, before anything listens.
func Serve(c ServerConfig, h http.Handler) (*Server, error) {
	tlsConf, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen: %w", err)
	}
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			TLSConfig:         tlsConf,
			Protocols:         &protocols,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		},
		ln:   ln,
		tls:  tlsConf != nil,
		done: make(chan struct{}),
	}
	go s.serve()
	return s, nil
}

// tlsConfig loads the certificate pair; nil without one.
func (c ServerConfig) tlsConfig() (*tls.Config, error) {
	switch {
	case c.CertFile == "" && c.KeyFile == "":
		return nil, nil
	case c.KeyFile == "":
		return nil, fmt.Errorf("gateway: tls: certificate %s given without its key file", c.CertFile)
	case c.CertFile == "":
		return nil, fmt.Errorf("gateway: tls: key %s given without its certificate file", c.KeyFile)
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("gateway: tls: certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func (s *Server) serve() {
	defer close(s.done)
	var err error
	if s.tls {
		err = s.srv.ServeTLS(s.ln, "", "") // the certificate is in TLSConfig; ALPN offers h2 and http/1.1
	} else {
		err = s.srv.Serve(s.ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		s.err = err
	}
}

// Addr returns the address the server listens on, with the real port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the server's base URL, http:// or https://. A wildcard listen
// address (0.0.0.0, ::) is given as the loopback address of its family,
// which reaches it from this machine.
func (s *Server) URL() string {
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	ap, err := netip.ParseAddrPort(s.Addr())
	if err != nil {
		return scheme + "://" + s.Addr()
	}
	if ip := ap.Addr(); ip.IsUnspecified() {
		loopback := netip.IPv6Loopback()
		if ip.Is4() {
			loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		ap = netip.AddrPortFrom(loopback, ap.Port())
	}
	return scheme + "://" + ap.String()
}

// Close stops accepting requests, waits for those in flight until ctx is
// done (then drops them), and waits for the server's goroutine. It returns
// the serving error, if any.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	return errors.Join(err, s.err)
}
