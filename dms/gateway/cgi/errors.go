package cgi

import "errors"

var (
	// ErrTooLarge means a request's environment is over the size the caller
	// allows (the gateway answers 431 Request Header Fields Too Large).
	ErrTooLarge = errors.New("cgi: environment too large")
	// ErrBadRequest means a request cannot be put in an environment: a
	// PathInfo that is not valid percent-encoding or decodes to a NUL byte,
	// or a NUL byte in a value (the gateway answers 400 Bad Request).
	ErrBadRequest = errors.New("cgi: request cannot be passed to a program")
	// ErrBadOutput means a program's stdout began a CGI header block and got
	// it wrong; the error says which line (the gateway answers 502 Bad Gateway).
	ErrBadOutput = errors.New("cgi: bad program output")
)
