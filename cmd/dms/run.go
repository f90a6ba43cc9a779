package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms"
	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/orchestrator"
)

// runFlags are the flags of `dms run`.
type runFlags struct {
	listen    []string
	bootstrap []string
	compute   bool
	api       string
	apiRemote bool
	metrics   string
	logLevel  string
	logFormat string
	// otlp exports the node's spans to this OTLP/HTTP collector.
	otlp string
	// gateway serves functions over HTTP there, with TLS when gatewayCert
	// and gatewayKey are given.
	gateway, gatewayCert, gatewayKey string
	// gatewayGroup makes the gateway a member of a group, founded with
	// gatewayPeers or joined (gatewayJoin).
	gatewayGroup string
	gatewayPeers []string
	gatewayJoin  bool
	// idleOnly gives only the host's idle CPU (config.yaml's offer.idle),
	// with idleThreshold and idlePeriod over the config file's.
	idleOnly                  bool
	idleThreshold, idlePeriod string
}

func (c *cli) runCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the node daemon until interrupted (SIGHUP reloads the offer from config.yaml)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(c.stderr, f.logLevel, f.logFormat)
			if err != nil {
				return err
			}
			if err := dms.CheckOTLPEndpoint(f.otlp); err != nil {
				return fmt.Errorf("--otlp-endpoint: %w", err)
			}
			if (f.gatewayCert != "" || f.gatewayKey != "") && !cmd.Flags().Changed("gateway") {
				return errors.New("--gateway-cert and --gateway-key need --gateway ADDR (or set them in config.yaml's gateway section)")
			}
			if (len(f.gatewayPeers) > 0 || f.gatewayJoin) && f.gatewayGroup == "" {
				return errors.New("--gateway-peers and --gateway-join need --gateway-group NAME (or set them in config.yaml's gateway.group)")
			}
			if (f.idleThreshold != "" || f.idlePeriod != "") && !f.idleOnly {
				return errors.New("--idle-threshold and --idle-period need --idle-only (or set them in config.yaml's offer.idle with enabled: true)")
			}
			opts := runOptions(cmd, c.home, f, logger)
			if name := os.Getenv("DMS_FAILPOINT"); name != "" {
				fp, err := failpoint(name, logger)
				if err != nil {
					return err
				}
				opts = append(opts, fp)
			}
			return c.serve(cmd.Context(), opts, logger)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.listen, "listen", nil, "multiaddr to listen on, repeatable; replaces config.yaml's listen")
	fl.StringArrayVar(&f.bootstrap, "bootstrap", nil, "full multiaddr (with /p2p/ID) of a peer to join through, repeatable; added to config.yaml's")
	fl.BoolVar(&f.compute, "compute", true, "offer compute (bid for jobs); --compute=false only submits jobs; when not given, config.yaml decides")
	fl.StringVar(&f.api, "api", "", `local API address on loopback, such as 127.0.0.1:0 (a free port); "" disables the API; when not given, config.yaml decides`)
	fl.BoolVar(&f.apiRemote, "api-remote", false, "allow --api on a non-loopback address, such as 0.0.0.0:7777 in a container; the token travels in clear HTTP, so keep it on a private network")
	fl.StringVar(&f.metrics, "metrics", "", `serve Prometheus metrics (GET /metrics) on this address, such as 127.0.0.1:9464; a bare :9464 binds loopback, 0.0.0.0:9464 every interface; "" serves none; when not given, config.yaml decides`)
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", logFormatUsage)
	fl.StringVar(&f.otlp, "otlp-endpoint", "", `export traces to this OTLP/HTTP collector, such as http://localhost:4318 (docs/observability.md); replaces config.yaml's traces.otlp_endpoint; "" and no OTEL_EXPORTER_OTLP_ENDPOINT: traces stay on the node`)
	fl.StringVar(&f.gateway, "gateway", "", `serve functions over HTTP on this address, such as 127.0.0.1:8080 (docs/functions.md); when not given, config.yaml's gateway.listen decides`)
	fl.StringVar(&f.gatewayCert, "gateway-cert", "", "PEM certificate (chain) for the gateway: it then serves HTTPS; with --gateway-key")
	fl.StringVar(&f.gatewayKey, "gateway-key", "", "PEM private key of --gateway-cert")
	fl.StringVar(&f.gatewayGroup, "gateway-group", "", "make the gateway a member of this replicated group of gateways (docs/gateway.md); replaces config.yaml's gateway.group")
	fl.StringSliceVar(&f.gatewayPeers, "gateway-peers", nil, "multiaddrs (with /p2p/ID) of the group's other founders, comma-separated; none: found in the DHT")
	fl.BoolVar(&f.gatewayJoin, "gateway-join", false, "join an existing group: wait to be added by a member (dms gateway add) instead of founding it")
	fl.BoolVar(&f.idleOnly, "idle-only", false, "give only idle CPU (docs/batches.md): bid only while the host's other processes leave it idle, stop running units when they come back; Linux only, no container jobs")
	fl.StringVar(&f.idleThreshold, "idle-threshold", "", `with --idle-only: the share of all cores the host's other processes may use while the node bids, such as 25%; replaces config.yaml's offer.idle.threshold`)
	fl.StringVar(&f.idlePeriod, "idle-period", "", "with --idle-only: how long they must stay under it before the node bids, such as 30s; replaces config.yaml's offer.idle.period")
	return cmd
}

// runOptions turns the flags into dms options; a flag not given leaves the
// config file's value.
func runOptions(cmd *cobra.Command, home string, f runFlags, logger *slog.Logger) []dms.Option {
	opts := []dms.Option{dms.WithHome(home), dms.WithLogger(logger), dms.WithBootstrap(f.bootstrap...)}
	if len(f.listen) > 0 {
		opts = append(opts, dms.WithListen(f.listen...))
	}
	if cmd.Flags().Changed("compute") {
		opts = append(opts, dms.WithCompute(f.compute))
	}
	if cmd.Flags().Changed("api") {
		opts = append(opts, dms.WithAPI(f.api))
	}
	if f.apiRemote {
		opts = append(opts, dms.WithRemoteAPI())
	}
	if cmd.Flags().Changed("metrics") {
		opts = append(opts, dms.WithMetrics(f.metrics))
	}
	if cmd.Flags().Changed("gateway") {
		opts = append(opts, dms.WithGatewayListen(f.gateway, f.gatewayCert, f.gatewayKey))
	}
	if f.gatewayGroup != "" {
		opts = append(opts, dms.WithGatewayGroup(f.gatewayGroup, f.gatewayPeers, f.gatewayJoin))
	}
	if f.idleOnly {
		opts = append(opts, dms.WithIdleOnly(node.IdleConfig{Threshold: f.idleThreshold, Period: f.idlePeriod}))
	}
	if cmd.Flags().Changed("otlp-endpoint") {
		opts = append(opts, dms.WithOTLPEndpoint(f.otlp))
	}
	return opts
}

// failpoints are the names DMS_FAILPOINT takes (docs/testing.md).
var failpoints = []string{orchestrator.FailpointInvoke}

// failpoint arms the failpoint name: the daemon kills itself with SIGKILL,
// as a crash would, when it passes it. For fault tests.
func failpoint(name string, logger *slog.Logger) (dms.Option, error) {
	if !slices.Contains(failpoints, name) {
		return nil, fmt.Errorf("DMS_FAILPOINT=%q: no such failpoint (known: %s)", name, strings.Join(failpoints, ", "))
	}
	logger.Warn("failpoint armed: the daemon kills itself when it passes it", "failpoint", name)
	return dms.WithFailpoint(func(at string) {
		if at != name {
			return
		}
		logger.Warn("failpoint reached: killing the daemon", "failpoint", name)
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			_ = p.Kill()
		}
		select {} // SIGKILL is on its way: nothing after the failpoint runs
	}), nil
}

// newLogger logs records at level and above to w, as text (key=value)
// or as JSON, one object a line, for a log collector.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// logFormatUsage documents --log-format.
const logFormatUsage = "log records as text (key=value) or json (one object a line)"

// serve starts the node, prints its addresses, and runs until ctx ends
// (SIGINT, SIGTERM), reloading the offer on SIGHUP and returning memory to
// the OS when idle (trimWhenIdle).
func (c *cli) serve(ctx context.Context, opts []dms.Option, logger *slog.Logger) error {
	d, err := dms.New(opts...)
	if err != nil {
		return err
	}
	if err := d.Start(ctx); err != nil {
		return errors.Join(fmt.Errorf("starting the node: %w", err), d.Close())
	}
	info, err := d.Node(ctx)
	if err == nil {
		err = c.printRunning(info, d.APIAddr(), d.MetricsAddr())
	}
	if err != nil {
		return errors.Join(err, d.Close())
	}
	trimCtx, stopTrim := context.WithCancel(ctx)
	trimmed := make(chan struct{})
	go func() { defer close(trimmed); trimWhenIdle(trimCtx, trimEvery, logger) }()
	waitSignals(ctx, d, logger)
	stopTrim()
	<-trimmed
	return d.Close()
}

// printRunning shows the node's addresses, to copy into another node's --bootstrap.
func (c *cli) printRunning(info api.NodeInfo, apiAddr, metricsAddr string) error {
	return c.print(info, func(w io.Writer) error {
		fmt.Fprintf(w, "node %s running (home %s)\n", info.PeerID, c.home)
		if apiAddr != "" {
			fmt.Fprintf(w, "API on %s (token in %s/%s)\n", apiAddr, c.home, api.EndpointFile)
		}
		if info.Gateway != "" {
			fmt.Fprintf(w, "gateway on %s\n", info.Gateway)
		}
		if metricsAddr != "" {
			fmt.Fprintf(w, "metrics on http://%s/metrics\n", metricsAddr)
		}
		fmt.Fprintln(w, "listening on (use one as --bootstrap for another node):")
		for _, a := range orNone(info.Addrs) {
			fmt.Fprintf(w, "  %s\n", a)
		}
		return nil
	})
}

// waitSignals returns when ctx ends, reloading the node's offer on every SIGHUP.
func waitSignals(ctx context.Context, d *dms.DMS, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutting down")
			return
		case <-hup:
			if err := d.Reload(ctx); err != nil {
				logger.Error("reload failed; keeping the previous offer", "err", err)
			} else {
				logger.Info("reloaded the offer from config.yaml")
			}
		}
	}
}
