package gateway

import (
	"context"
	"io"

	"github.com/opendms/dms/types"
)

// Admin is what a gateway's operator does: accounts and their keys.
type Admin interface {
	// CreateAccount makes an account and its first key.
	CreateAccount(ctx context.Context, name string) (Account, NewKey, error)
	ListAccounts(ctx context.Context) ([]Account, error)
	GetAccount(ctx context.Context, name string) (Account, error)
	// Credit adds credits to an account; SetCreditLimit sets how far
	// below zero its credits may go. Both return the account then.
	Credit(ctx context.Context, name string, amount types.Credits, memo string) (Account, error)
	SetCreditLimit(ctx context.Context, name string, limit types.Credits) (Account, error)
	// Invoice returns an account's invoice for a period ("2026-12"):
	// closed, as it was closed; open, worked out now. Invoices lists the
	// periods with entries or a closed invoice; CloseInvoice closes one
	// that has ended (ErrBadRequest before; ErrConflict when closed).
	Invoice(ctx context.Context, account, period string) (Invoice, error)
	Invoices(ctx context.Context, account string) ([]InvoiceSummary, error)
	CloseInvoice(ctx context.Context, account, period string) (Invoice, error)
	// Payout settles the receipt charges not settled yet, a statement per
	// provider (payouts.go); Statements lists every payout's.
	Payout(ctx context.Context) ([]Statement, error)
	Statements(ctx context.Context) ([]Statement, error)
	// AddKey makes another key for an account.
	AddKey(ctx context.Context, account string) (NewKey, error)
	ListKeys(ctx context.Context, account string) ([]Key, error)
	// RevokeKey makes a key useless at once; revoking twice is ErrConflict.
	RevokeKey(ctx context.Context, account, id string) error
	// Group describes the gateway's group (ErrNotFound when in none).
	Group(ctx context.Context) (GroupStatus, error)
	// AddMember adds a gateway, by multiaddr or peer ID, to the group and
	// returns its peer ID; RemoveMember removes one.
	AddMember(ctx context.Context, addr string) (string, error)
	RemoveMember(ctx context.Context, id string) error
}

// Functions is what an account does with its functions.
type Functions interface {
	// PutModule stores a module (or image archive) and returns its CID,
	// for Deploy to name.
	PutModule(ctx context.Context, r io.Reader) (string, error)
	// Deploy makes the function's next revision.
	Deploy(ctx context.Context, d Deploy) (Revision, error)
	ListFunctions(ctx context.Context, q Query) ([]Function, error)
	GetFunction(ctx context.Context, name string) (Function, error)
	Revisions(ctx context.Context, name string) ([]Revision, error)
	// SetDefault switches the function's default revision.
	SetDefault(ctx context.Context, name string, rev int) (Function, error)
	// SetTags replaces the function's tags.
	SetTags(ctx context.Context, name string, tags map[string]string) (Function, error)
	// SetScaling replaces how the function's warm instances follow its
	// load.
	SetScaling(ctx context.Context, name string, s Scaling) (Function, error)
	// Instances lists the function's warm instances.
	Instances(ctx context.Context, name string) ([]Instance, error)
	// DeleteFunction removes the function, its revisions and its
	// endpoints, and releases its warm instances; its tasks stay until
	// their retention ends.
	DeleteFunction(ctx context.Context, name string) error
}

// Calls runs functions.
type Calls interface {
	// Invoke runs a call and waits for the function's answer.
	Invoke(ctx context.Context, name string, call Call) (Response, error)
	// InvokeAsync accepts a call and returns its task at once; the task's
	// result is read with TaskResult.
	InvokeAsync(ctx context.Context, name string, call Call) (Task, error)
}

// Endpoints is what an account does with its endpoints.
type Endpoints interface {
	CreateEndpoint(ctx context.Context, spec EndpointSpec) (Endpoint, error)
	ListEndpoints(ctx context.Context, q Query) ([]Endpoint, error)
	GetEndpoint(ctx context.Context, name string) (Endpoint, error)
	// UpdateEndpoint replaces an endpoint's spec; its quota count stays.
	UpdateEndpoint(ctx context.Context, spec EndpointSpec) (Endpoint, error)
	DeleteEndpoint(ctx context.Context, name string) error
}

// Tasks is what an account sees of its calls.
type Tasks interface {
	ListTasks(ctx context.Context, q TaskQuery) ([]Task, error)
	GetTask(ctx context.Context, id string) (Task, error)
	// StopTask stops a task that has not ended; ErrConflict if it has.
	StopTask(ctx context.Context, id string) (Task, error)
	// TaskResult is a completed task's response; ErrConflict before.
	TaskResult(ctx context.Context, id string) (Response, error)
	// ListTags lists the account's tags in use.
	ListTags(ctx context.Context) ([]Tag, error)
}

// Service is everything one account can do. Gateway.As returns the
// in-process one, NewClient one over HTTP. Implementations are safe for
// concurrent use.
type Service interface {
	Functions
	Calls
	Endpoints
	Tasks
}
