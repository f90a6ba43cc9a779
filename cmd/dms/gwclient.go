package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/dms/gateway"
	"github.com/opendms/dms/jobs"
)

// Environment variables that stand for --key and --gateway.
const (
	envAPIKey  = "DMS_API_KEY"
	envGateway = "DMS_GATEWAY"
)

// actor is who a function, endpoint, task or tag command acts as: an
// account through the local daemon (its admin token stands behind it), or
// an API key against a gateway's URL.
type actor struct {
	account string
	url     string
	key     string
	ca      string
}

func (a *actor) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&a.account, "account", "", "act as account NAME through the local daemon of --home")
	fs.StringVar(&a.url, "gateway", "", "the gateway's URL, such as https://gw.example:8443 ($"+envGateway+")")
	fs.StringVar(&a.key, "key", "", "an API key of an account on --gateway ($"+envAPIKey+")")
	fs.StringVar(&a.ca, "ca", "", "a PEM file of the CA (or self-signed certificate) to trust for an https --gateway")
}

// accountGroup is a command family whose commands act as an account: it
// carries the actor's flags.
func accountGroup(a *actor, use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := groupCmd(use, short, subs...)
	a.addFlags(cmd.PersistentFlags())
	return cmd
}

// errNoActor says how to name who acts.
var errNoActor = errors.New("say who acts: --account NAME (through the local daemon of --home), " +
	"or --gateway URL --key KEY (or $" + envGateway + " and $" + envAPIKey + ")")

// gatewayClient connects as the actor: the local daemon's API with its
// admin token and --account, or --gateway with --key.
func (c *cli) gatewayClient(a *actor) (*gateway.Client, error) {
	if a.account != "" {
		if a.key != "" || a.url != "" || a.ca != "" {
			return nil, errors.New("--account acts through the local daemon: give either --account or --gateway URL --key KEY, not both")
		}
		return c.localClient(a.account)
	}
	key, base := cmp.Or(a.key, os.Getenv(envAPIKey)), cmp.Or(a.url, os.Getenv(envGateway))
	switch {
	case key == "":
		return nil, errNoActor
	case base == "":
		return nil, errors.New("--key needs the gateway's URL: --gateway URL (or $" + envGateway + ")")
	}
	if err := checkGatewayURL(base); err != nil {
		return nil, err
	}
	hc, err := httpClient(a.ca)
	if err != nil {
		return nil, err
	}
	return gateway.NewClient(base, gateway.Auth{Key: key}, hc), nil
}

// localClient connects to the local daemon with its admin token, acting
// as account, or as the admin when account is "".
func (c *cli) localClient(account string) (*gateway.Client, error) {
	e, err := api.ReadEndpoint(c.home)
	if err != nil {
		return nil, err
	}
	return gateway.NewClient("http://"+e.Addr, gateway.Auth{Token: e.Token, Account: account}, nil), nil
}

// checkGatewayURL checks a --gateway URL (gateway.NewClient drops a
// trailing slash).
func checkGatewayURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--gateway %q: want a URL such as https://gw.example:8443", s)
	}
	return nil
}

// httpClient trusts the PEM certificates in caFile besides the system's;
// with no file it is nil, the client's default.
func httpClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", caFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t}, nil
}

// acting makes a command's RunE: it connects as the actor, runs run and
// explains the error it returns.
func (c *cli) acting(a *actor, run func(ctx context.Context, gw *gateway.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		gw, err := c.gatewayClient(a)
		if err != nil {
			return err
		}
		return explain(a, run(cmd.Context(), gw, args))
	}
}

// explained replaces an error's message for people and keeps it for
// errors.Is.
type explained struct {
	msg string
	err error
}

func (e explained) Error() string { return e.msg }
func (e explained) Unwrap() error { return e.err }

// explain says what a refused credential means, when to retry and which
// task failed; a nil actor is the admin token alone.
func explain(a *actor, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, api.ErrUnauthorized) && a != nil && a.account == "":
		return explained{"the API key was refused (revoked or wrong)", err}
	case errors.Is(err, api.ErrUnauthorized):
		return explained{"the daemon refused its admin token (" + err.Error() + "): is the daemon of --home still the one that wrote api.json?", err}
	}
	msg := err.Error()
	var retry api.Retryer
	if errors.As(err, &retry) && retry.RetryAfter() > 0 {
		msg += fmt.Sprintf(" (retry after %s)", retry.RetryAfter())
	}
	var call *gateway.CallError
	if errors.As(err, &call) {
		msg += " (task " + call.Task + ")"
	}
	if msg == err.Error() {
		return err
	}
	return explained{msg, err}
}

// invalid lists the field problems of a refused request one per line
// under heading ("invalid endpoint:"); other errors pass. It keeps
// jobs.ErrInvalidSpec for errors.Is, but not the *jobs.SpecError, which
// message() would head "invalid job spec".
func invalid(heading string, err error) error {
	var specErr *jobs.SpecError
	if !errors.As(err, &specErr) || len(specErr.Problems) == 0 {
		return err
	}
	var b strings.Builder
	b.WriteString(heading + ":")
	for _, p := range specErr.Problems {
		fmt.Fprintf(&b, "\n  %s", p)
	}
	return explained{b.String(), jobs.ErrInvalidSpec}
}

// namedArgs requires one positional argument per name, as oneArg does for
// one.
func namedArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return fmt.Errorf("%s takes %s, got %d argument(s) (usage: %s)", cmd.CommandPath(), strings.Join(names, " "), len(args), cmd.UseLine())
		}
		return nil
	}
}
