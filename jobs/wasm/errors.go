package wasm

import "errors"

var (
	// ErrClosed means the executor was closed.
	ErrClosed = errors.New("wasm: executor closed")
	// ErrBadInput means an Input the executor cannot run as given.
	ErrBadInput = errors.New("wasm: bad input")
)
