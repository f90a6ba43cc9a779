package gateway

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/types"
)

// CreateAccount makes an account and its first key (admin token).
func (c *Client) CreateAccount(ctx context.Context, name string) (Account, NewKey, error) {
	var out createdAccount
	err := c.callJSON(ctx, http.MethodPost, "/v1/accounts", createAccountBody{Name: name}, &out)
	return out.Account, out.Key, err
}

// ListAccounts lists the gateway's accounts (admin token).
func (c *Client) ListAccounts(ctx context.Context) ([]Account, error) {
	var list []Account
	err := c.call(ctx, http.MethodGet, "/v1/accounts", nil, &list)
	return list, err
}

// GetAccount returns one account (admin token).
func (c *Client) GetAccount(ctx context.Context, name string) (Account, error) {
	var a Account
	err := c.call(ctx, http.MethodGet, accountPath(name), nil, &a)
	return a, err
}

// AddKey makes another key for an account (admin token).
func (c *Client) AddKey(ctx context.Context, account string) (NewKey, error) {
	var k NewKey
	err := c.call(ctx, http.MethodPost, accountPath(account)+"/keys", nil, &k)
	return k, err
}

// ListKeys lists an account's keys, without secrets (admin token).
func (c *Client) ListKeys(ctx context.Context, account string) ([]Key, error) {
	var list []Key
	err := c.call(ctx, http.MethodGet, accountPath(account)+"/keys", nil, &list)
	return list, err
}

// RevokeKey revokes one of an account's keys (admin token).
func (c *Client) RevokeKey(ctx context.Context, account, id string) error {
	return c.call(ctx, http.MethodDelete, accountPath(account)+"/keys/"+url.PathEscape(id), nil, nil)
}

// Credit adds credits to an account (admin token).
func (c *Client) Credit(ctx context.Context, name string, amount types.Credits, memo string) (Account, error) {
	var a Account
	err := c.callJSON(ctx, http.MethodPost, accountPath(name)+"/credits", creditBody{Amount: amount, Memo: memo}, &a)
	return a, err
}

// SetCreditLimit sets an account's credit limit (admin token).
func (c *Client) SetCreditLimit(ctx context.Context, name string, limit types.Credits) (Account, error) {
	var a Account
	err := c.callJSON(ctx, http.MethodPut, accountPath(name)+"/limit", limitBody{Limit: limit}, &a)
	return a, err
}

// Payout settles the receipt charges not settled yet (admin token).
func (c *Client) Payout(ctx context.Context) ([]Statement, error) {
	var list []Statement
	err := c.call(ctx, http.MethodPost, "/v1/payouts", nil, &list)
	return list, err
}

// Statements lists every payout's statements (admin token).
func (c *Client) Statements(ctx context.Context) ([]Statement, error) {
	var list []Statement
	err := c.call(ctx, http.MethodGet, "/v1/payouts", nil, &list)
	return list, err
}

func accountPath(name string) string { return "/v1/accounts/" + url.PathEscape(name) }

// Group describes the gateway's group (admin token).
func (c *Client) Group(ctx context.Context) (GroupStatus, error) {
	var s GroupStatus
	err := c.call(ctx, http.MethodGet, "/v1/gateway/group", nil, &s)
	return s, err
}

// AddMember adds a gateway to the group, by multiaddr or peer ID, and
// returns its peer ID (admin token).
func (c *Client) AddMember(ctx context.Context, addr string) (string, error) {
	var out addMemberBody
	err := c.callJSON(ctx, http.MethodPost, "/v1/gateway/group/members", addMemberBody{Addr: addr}, &out)
	return out.ID, err
}

// RemoveMember removes a gateway from the group (admin token).
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/gateway/group/members/"+url.PathEscape(id), nil, nil)
}

func invoicePath(account, period string) string {
	return "/v1/invoices/" + url.PathEscape(account) + "/" + url.PathEscape(period)
}

// Invoices lists an account's invoice periods (admin token).
func (c *Client) Invoices(ctx context.Context, account string) ([]InvoiceSummary, error) {
	var list []InvoiceSummary
	err := c.call(ctx, http.MethodGet, "/v1/invoices"+encodeQuery(url.Values{"account": {account}}), nil, &list)
	return list, err
}

// Invoice returns an account's invoice for a period (admin token).
func (c *Client) Invoice(ctx context.Context, account, period string) (Invoice, error) {
	var inv Invoice
	err := c.call(ctx, http.MethodGet, invoicePath(account, period), nil, &inv)
	return inv, err
}

// InvoiceDocument returns an account's invoice for a period as format
// ("json", "csv" or "html"), as the gateway renders it (admin token).
func (c *Client) InvoiceDocument(ctx context.Context, account, period, format string) ([]byte, error) {
	req, err := c.request(ctx, http.MethodGet, invoicePath(account, period)+encodeQuery(url.Values{"format": {format}}), nil)
	if err != nil {
		return nil, err
	}
	c.authorize(req)
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, api.DecodeError(resp)
	}
	return io.ReadAll(resp.Body)
}

// CloseInvoice closes an account's invoice for a period that has ended
// (admin token).
func (c *Client) CloseInvoice(ctx context.Context, account, period string) (Invoice, error) {
	var inv Invoice
	err := c.call(ctx, http.MethodPost, invoicePath(account, period)+"/close", nil, &inv)
	return inv, err
}
