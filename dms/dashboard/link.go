package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/opendms/dms/dms/api"
)

// Link asks the daemon at e for a one-time code and returns the link that
// logs a browser in with it, and when the code expires: what `dms
// dashboard` prints. A daemon listening on every address (0.0.0.0) is
// linked at localhost.
func Link(ctx context.Context, e api.Endpoint) (string, time.Time, error) {
	base := "http://" + linkHost(e.Addr)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+Prefix+"codes", nil)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("dashboard: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+e.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("dashboard: cannot reach the daemon at %s (is `dms run` still running?): %w", e.Addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", time.Time{}, api.DecodeError(resp)
	}
	var c codeReply
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return "", time.Time{}, fmt.Errorf("dashboard: reading the code: %w", err)
	}
	return base + c.Path, c.ExpiresAt, nil
}

// linkHost is addr with an unspecified IP replaced by localhost.
func linkHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
