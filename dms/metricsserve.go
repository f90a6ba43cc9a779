package dms

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opendms/dms/dms/api"
)

// metricsPath is the one path the metrics listener serves.
const metricsPath = "/metrics"

// metricsAddr checks a metrics listen address (the config file's metrics,
// WithMetrics, dms run --metrics) and returns the one to listen on: a bare
// ":PORT" binds loopback, so metrics leave the machine only when the
// operator names a host (0.0.0.0:9464, a LAN address). "" stays "": no
// listener.
func metricsAddr(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%w %q: %w (want HOST:PORT, such as 127.0.0.1:9464)", ErrBadMetricsAddr, addr, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || (p == 0 && port != "0") {
		return "", fmt.Errorf("%w %q: port %q is not a number from 0 to 65535", ErrBadMetricsAddr, addr, port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// MetricsHandler serves the node's metrics in the Prometheus text format,
// from its own registry: mount it on a server of your own to scrape a
// node without a metrics listener. It is ready from New; the state of
// the parts Start brings up (jobs, ledger, network) appears once Start
// returned.
func (d *DMS) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// MetricsGatherer returns the node's own registry, to read its metrics
// without HTTP: a program that runs many nodes gathers each apart (or
// several together with prometheus.Gatherers, where their families must
// then differ by a label of yours).
func (d *DMS) MetricsGatherer() prometheus.Gatherer { return d.metrics.reg }

// metricsHandler is the metrics listener's whole surface: GET (and HEAD)
// /metrics; 404 for any other path, 405 for any other method.
func (d *DMS) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+metricsPath, d.MetricsHandler())
	return mux
}

// startMetrics opens the metrics listener when the config names one.
func (d *DMS) startMetrics() error {
	addr, err := metricsAddr(d.conf.Metrics)
	if err != nil || addr == "" {
		return err
	}
	srv, err := api.ServeRemote(addr, d.metricsHandler())
	if err != nil {
		return fmt.Errorf("dms: metrics on %s: %w", addr, err)
	}
	d.metricsSrv = srv
	d.log.Info("metrics serving", "url", "http://"+srv.Addr()+metricsPath)
	return nil
}

// stopMetrics closes the metrics listener, waiting for scrapes in flight
// until ctx ends.
func (d *DMS) stopMetrics(ctx context.Context) {
	if d.metricsSrv != nil {
		_ = d.metricsSrv.Close(ctx)
	}
}

// MetricsAddr returns the metrics listener's address once started, with
// its real port ("" without one).
func (d *DMS) MetricsAddr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.metricsSrv == nil {
		return ""
	}
	return d.metricsSrv.Addr()
}
