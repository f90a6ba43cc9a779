package policy_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/opendms/dms/dms/gateway/policy"
)

// A gateway finds the client behind its proxy, counts calls per quota day,
// and asks the endpoint's policy.
func Example() {
	berlin, _ := policy.LoadZone("Europe/Berlin")
	office, _ := policy.ParsePrefix("10.0.0.0/8")
	hours, _ := policy.ParseWindow("Mon-Fri 08:00-18:00 Europe/Berlin")
	p := policy.Policy{AllowIPs: []netip.Prefix{office}, Windows: []policy.Window{hours}, DailyQuota: 5, Zone: berlin}

	proxy, _ := policy.ParsePrefix("192.0.2.1")
	ip, _ := policy.ClientIP("192.0.2.1:41000", []string{"203.0.113.9, 10.1.2.3"}, []netip.Prefix{proxy})
	friday := time.Date(2026, 12, 4, 19, 0, 0, 0, berlin)
	fmt.Println(ip, p.Day(friday))
	if r := p.Check(ip, friday, 0); r != nil {
		fmt.Println(r.Status, r.Reason, r.RetryAfter)
	}
	// Output:
	// 10.1.2.3 2026-12-04
	// 403 the endpoint is closed now; it opens next at 2026-12-07T08:00:00+01:00 (Mon-Fri 08:00-18:00 Europe/Berlin) 61h0m0s
}
