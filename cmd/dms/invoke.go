package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/dms/gateway"
)

// callFlags are an invoke's flags, as given.
type callFlags struct {
	rev                       int
	data, method, path, query string
	idempotencyKey            string
	headers                   []string
	async, include            bool
}

func (f *callFlags) addFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.IntVar(&f.rev, "rev", 0, "the revision to run (default: the function's default revision)")
	fs.StringVarP(&f.data, "data", "d", "", "the request body: TEXT, @FILE, or - for stdin")
	fs.StringVarP(&f.method, "method", "X", "", "the HTTP method (default: POST with --data, else GET)")
	fs.StringVar(&f.path, "path", "", "the path after the function's, such as /items/3")
	fs.StringVar(&f.query, "query", "", "the query string, such as 'a=1&b=2'")
	fs.StringArrayVarP(&f.headers, "header", "H", nil, "a request header 'Name: value' (repeat)")
	fs.StringVar(&f.idempotencyKey, "idempotency-key", "", "run the call once: a call again with the same KEY gets the first one's answer")
	fs.BoolVar(&f.async, "async", false, "return the task's ID at once; read its answer with dms task result ID")
	fs.BoolVarP(&f.include, "include", "i", false, "print the status and headers before the body")
}

// call builds the Call the flags ask for; --data - reads stdin.
func (f *callFlags) call(stdin io.Reader) (gateway.Call, error) {
	body, err := requestBody(f.data, stdin)
	if err != nil {
		return gateway.Call{}, err
	}
	header, err := parseHeaders(f.headers)
	if err != nil {
		return gateway.Call{}, err
	}
	method := f.method
	if method == "" {
		method = http.MethodGet
		if f.data != "" {
			method = http.MethodPost
		}
	}
	path := f.path
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return gateway.Call{Revision: f.rev, Method: strings.ToUpper(method), Path: path,
		RawQuery: strings.TrimPrefix(f.query, "?"), Header: header, Body: body, IdempotencyKey: f.idempotencyKey}, nil
}

// requestBody reads --data: "" none, "-" stdin, "@FILE" the file, else
// the text itself.
func requestBody(data string, stdin io.Reader) (io.Reader, error) {
	switch {
	case data == "":
		return nil, nil
	case data == "-":
		return stdin, nil
	case strings.HasPrefix(data, "@"):
		b, err := os.ReadFile(data[1:])
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		return bytes.NewReader(b), nil
	}
	return strings.NewReader(data), nil
}

// parseHeaders reads 'Name: value' arguments of --header.
func parseHeaders(args []string) (http.Header, error) {
	h := http.Header{}
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--header %q: want 'Name: value'", arg)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h, nil
}

func (c *cli) functionInvokeCmd(a *actor) *cobra.Command {
	var f callFlags
	cmd := &cobra.Command{
		Use:   "invoke NAME",
		Short: "Call a function over HTTP and print its answer's body",
		Long: `Call a function over HTTP and print its answer's body, byte for byte.

With --include the status and headers come first, as a CGI header block
("Status: 200 OK", one "Name: value" line per header, a blank line). With
--output json the whole response is printed (its body base64, as on the wire).
Exit status: 0 when the function answered 2xx; 1 otherwise (the status is said
on stderr), or when the gateway could not run the call at all.`,
		Args: oneArg("NAME"),
	}
	cmd.RunE = c.acting(a, func(ctx context.Context, gw *gateway.Client, args []string) error {
		call, err := f.call(cmd.InOrStdin())
		if err != nil {
			return err
		}
		if f.async {
			return c.invokeAsync(ctx, gw, args[0], call)
		}
		resp, err := gw.Invoke(ctx, args[0], call)
		if err != nil {
			return err
		}
		return c.printResponse("function "+args[0], resp, f.include)
	})
	f.addFlags(cmd)
	return cmd
}

// invokeAsync starts a call and prints its task's ID (its JSON with
// --output json).
func (c *cli) invokeAsync(ctx context.Context, gw *gateway.Client, name string, call gateway.Call) error {
	task, err := gw.InvokeAsync(ctx, name, call)
	if err != nil {
		return err
	}
	return c.print(task, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, task.ID)
		return err
	})
}

// printResponse writes a function's answer: its body as it is (after its
// head with include), or its JSON. A status other than 2xx is said on
// stderr, for what answered, and exits 1.
func (c *cli) printResponse(what string, resp gateway.Response, include bool) error {
	err := c.print(resp, func(w io.Writer) error {
		if include {
			writeHead(w, resp)
		}
		_, err := w.Write(resp.Body)
		return err
	})
	if err != nil || resp.Status/100 == 2 {
		return err
	}
	fmt.Fprintf(c.stderr, "dms: %s answered %d %s (task %s)\n", what, resp.Status, http.StatusText(resp.Status), resp.Task)
	return exitError{1}
}

// writeHead writes a response's status and headers as a CGI header block.
func writeHead(w io.Writer, resp gateway.Response) {
	fmt.Fprintf(w, "Status: %d %s\n", resp.Status, http.StatusText(resp.Status))
	for _, k := range slices.Sorted(maps.Keys(resp.Header)) {
		for _, v := range resp.Header[k] {
			fmt.Fprintf(w, "%s: %s\n", k, v)
		}
	}
	fmt.Fprintln(w)
}
