package gateway

import (
	"context"
	"net/http"
	"net/url"
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
