package dms

import "errors"

var (
	// ErrNoHome means the home directory holds no node: run Init first.
	ErrNoHome = errors.New("dms: no node in home")
	// ErrHomeExists means Init found a node already in the home.
	ErrHomeExists = errors.New("dms: home already initialised")
	// ErrNotStarted means a method that needs the network was called before Start.
	ErrNotStarted = errors.New("dms: not started")
	// ErrClosed means the DMS was closed.
	ErrClosed = errors.New("dms: closed")
	// ErrBadReceipt means a receipt was refused; the error says why.
	ErrBadReceipt = errors.New("dms: receipt refused")
	// ErrBadMetricsAddr means a metrics listen address is not HOST:PORT.
	ErrBadMetricsAddr = errors.New("dms: bad metrics address")
)
