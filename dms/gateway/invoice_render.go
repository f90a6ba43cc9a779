package gateway

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/opendms/dms/types"
)

// invoiceCSVHeader names the columns of an invoice as CSV.
var invoiceCSVHeader = []string{"name", "receipts", "calls", "core_seconds", "unit_price", "amount", "late"}

// writeInvoiceCSV writes inv as CSV: a header, one row per line, and a
// row "total" summing them.
func writeInvoiceCSV(w io.Writer, inv Invoice) error {
	cw := csv.NewWriter(w)
	cw.Write(invoiceCSVHeader)
	var count int
	var calls uint64
	var core int64
	for _, l := range inv.Lines {
		cw.Write([]string{csvText(l.Name), strconv.Itoa(l.Count), strconv.FormatUint(l.Calls, 10), CoreSeconds(l.CoreMS), l.UnitPrice, l.Amount.String(), l.Late})
		count, calls, core = count+l.Count, calls+l.Calls, core+l.CoreMS
	}
	cw.Write([]string{"total", strconv.Itoa(count), strconv.FormatUint(calls, 10), CoreSeconds(core), "", inv.Total.String(), ""})
	cw.Flush()
	return cw.Error()
}

// csvText keeps a cell of text that a spreadsheet would read as a
// formula (a job's name is its submitter's choice) as text: it starts
// with a quote.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// CoreSeconds writes core-milliseconds as core-seconds, exactly: "1.500".
func CoreSeconds(ms int64) string { return fmt.Sprintf("%d.%03d", ms/1000, ms%1000) }

// invoiceHTML is an invoice as a printable page: no script, no external
// asset; html/template escapes every name.
var invoiceHTML = template.Must(template.New("invoice").Funcs(template.FuncMap{
	"CoreSeconds": CoreSeconds,
	"day":         func(t time.Time) string { return t.UTC().Format(time.DateOnly) },
	"credits":     types.Credits.String,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Invoice {{.Account}} {{.Period}}</title>
<style>
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5em; }
th, td { border-bottom: 1px solid #999; padding: .3em .5em; text-align: left; }
td.n, th.n { text-align: right; }
small { color: #555; word-break: break-all; }
</style></head>
<body>
<h1>Invoice</h1>
<p>Account <strong>{{.Account}}</strong>, period {{.Period}} ({{day .From}} to {{day .To}}, UTC):
{{if .Closed}}closed {{day .ClosedAt}}{{else}}open: figures may still change{{end}}.</p>
<table>
<tr><th>Function or job</th><th class="n">Receipts</th><th class="n">Calls</th><th class="n">Core-seconds</th><th class="n">Unit price (per core-hour)</th><th class="n">Amount</th></tr>
{{range .Lines}}<tr><td>{{.Name}}{{if .Late}} <em>(of {{.Late}}, charged after its invoice was closed)</em>{{end}}<br><small>{{range $i, $r := .Receipts}}{{if $i}}, {{end}}{{$r}}{{end}}</small></td><td class="n">{{.Count}}</td><td class="n">{{.Calls}}</td><td class="n">{{CoreSeconds .CoreMS}}</td><td class="n">{{.UnitPrice}}</td><td class="n">{{credits .Amount}}</td></tr>
{{end}}<tr><th colspan="5">Total</th><th class="n">{{credits .Total}}</th></tr>
</table>
{{if .Credits}}<h2>Credits</h2>
<table>
<tr><th>Date</th><th>Entry</th><th>Memo</th><th class="n">Amount</th></tr>
{{range .Credits}}<tr><td>{{day .At}}</td><td>{{.ID}}</td><td>{{.Memo}}</td><td class="n">{{credits .Amount}}</td></tr>
{{end}}<tr><th colspan="3">Credited</th><th class="n">{{credits .Credited}}</th></tr>
</table>{{end}}
</body></html>
`))
