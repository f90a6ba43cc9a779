// Package cgi is the contract between the gateway and a function: how an
// HTTP call becomes a run of a program, and how the program's stdout becomes
// the HTTP response. It follows CGI/1.1 (RFC 3875) as WAGI (deislabs/wagi)
// applies it to WASI modules, so a WAGI module runs unchanged.
//
// The package is pure: no I/O, no goroutines. The gateway reads the request,
// calls Env, runs the program with the body as stdin, and calls ParseOutput
// on the program's stdout. A function's own environment (set when it was
// deployed) goes under Env's result: the call's variables win, as in WAGI.
//
//	env, err := cgi.Env(req, limit)   // ErrTooLarge -> 431, ErrBadRequest -> 400
//	out := run(program, env, body)     // jobs.Input{Env: env, Stdin: body}
//	res, err := cgi.ParseOutput(out)   // ErrBadOutput -> 502
//
// The call: the method, path, query and headers go to the environment:
// REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING, SERVER_NAME,
// SERVER_PORT, SERVER_PROTOCOL, CONTENT_TYPE, CONTENT_LENGTH, REMOTE_ADDR,
// GATEWAY_INTERFACE=CGI/1.1, WAGI's X_MATCHED_ROUTE, X_FULL_URL and
// X_RAW_PATH_INFO, and HTTP_NAME_OF_HEADER for each header passed. Request
// holds the path still percent-encoded: X_RAW_PATH_INFO is it as sent and
// PATH_INFO (and PATH_TRANSLATED) is it percent-decoded, "+" kept, as in
// WAGI; X_FULL_URL uses the encoded path.
//
// The response: stdout is the body, unless it starts with a CGI header block
// (see ParseOutput) that sets the status and headers.
//
// Invariants:
//   - Authorization and Proxy-Authorization never reach a program, however
//     spelled: they carry the caller's gateway API key. Nor do hop-by-hop
//     headers (Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
//     Transfer-Encoding, Upgrade), Proxy (httpoxy), or a header whose name
//     holds "_" or is not a token. Host, Content-Type and Content-Length
//     come from their own fields and variables, not HTTP_*. Cookie is passed.
//   - Env's result depends on its Request alone; its names and values add
//     up to at most the limit, and no value holds a NUL byte.
//   - The gateway owns the framing of the response: a program's Status
//     line, Content-Length and hop-by-hop headers never reach
//     Response.Header. A Response has a status in 200..599 and one
//     Content-Type, and its Body is a suffix of stdout.
package cgi
