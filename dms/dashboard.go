package dms

import (
	"net/http"

	"github.com/opendms/dms/dms/dashboard"
)

// dashboard is the web dashboard the local API serves under
// dashboard.Prefix, behind the API's token (docs/dashboard.md).
func (d *DMS) dashboard(token string) http.Handler {
	c := dashboard.Config{Service: d, Token: token, Logger: d.log.With("component", "dashboard")}
	if d.gw != nil {
		c.Gateway = d.gw
	}
	dash, err := dashboard.New(c)
	if err != nil { // its embedded templates do not parse: its own tests fail first
		d.log.Error("dashboard disabled", "error", err)
		return http.NotFoundHandler()
	}
	return dash
}
