package gateway

import (
	"bytes"
	"fmt"
	"net/http"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/types"
)

// createAccountBody is POST /v1/accounts's body.
type createAccountBody struct {
	Name string `json:"name"`
}

// createdAccount is POST /v1/accounts's reply: the account and its first
// key, whose secret is shown this once.
type createdAccount struct {
	Account Account `json:"account"`
	Key     NewKey  `json:"key"`
}

func (h *handler) createAccount(w http.ResponseWriter, r *http.Request) {
	var body createAccountBody
	if err := readJSON(w, r, &body); err != nil {
		h.fail(w, r, err)
		return
	}
	a, k, err := h.b.CreateAccount(r.Context(), body.Name)
	h.reply(w, r, http.StatusCreated, createdAccount{Account: a, Key: k}, err)
}

func (h *handler) listAccounts(w http.ResponseWriter, r *http.Request) {
	list, err := h.b.ListAccounts(r.Context())
	replyList(h, w, r, list, err)
}

func (h *handler) getAccount(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	var a Account
	if err == nil {
		a, err = h.b.GetAccount(r.Context(), name)
	}
	h.reply(w, r, http.StatusOK, a, err)
}

// creditBody is POST /v1/accounts/{name}/credits's body.
type creditBody struct {
	Amount types.Credits `json:"amount"`
	Memo   string        `json:"memo,omitempty"`
}

func (h *handler) credit(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	var body creditBody
	if err == nil {
		err = readJSON(w, r, &body)
	}
	var a Account
	if err == nil {
		a, err = h.b.Credit(r.Context(), name, body.Amount, body.Memo)
	}
	h.reply(w, r, http.StatusOK, a, err)
}

// limitBody is PUT /v1/accounts/{name}/limit's body.
type limitBody struct {
	Limit types.Credits `json:"limit"`
}

func (h *handler) setLimit(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	var body limitBody
	if err == nil {
		err = readJSON(w, r, &body)
	}
	var a Account
	if err == nil {
		a, err = h.b.SetCreditLimit(r.Context(), name, body.Limit)
	}
	h.reply(w, r, http.StatusOK, a, err)
}

func (h *handler) payout(w http.ResponseWriter, r *http.Request) {
	list, err := h.b.Payout(r.Context())
	replyList(h, w, r, list, err)
}

// statements answers GET /v1/payouts: JSON, or CSV with ?format=csv.
func (h *handler) statements(w http.ResponseWriter, r *http.Request) {
	list, err := h.b.Statements(r.Context())
	if err != nil || r.URL.Query().Get("format") != "csv" {
		replyList(h, w, r, list, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	_ = WriteStatementsCSV(w, list)
}

func (h *handler) addKey(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	var k NewKey
	if err == nil {
		k, err = h.b.AddKey(r.Context(), name)
	}
	h.reply(w, r, http.StatusCreated, k, err)
}

func (h *handler) listKeys(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	var list []Key
	if err == nil {
		list, err = h.b.ListKeys(r.Context(), name)
	}
	replyList(h, w, r, list, err)
}

func (h *handler) revokeKey(w http.ResponseWriter, r *http.Request) {
	name, err := pathName(r, "name")
	var id string
	if err == nil {
		id, err = pathName(r, "id")
	}
	if err == nil {
		err = h.b.RevokeKey(r.Context(), name, id)
	}
	h.replyNone(w, r, err)
}

func (h *handler) getGroup(w http.ResponseWriter, r *http.Request) {
	s, err := h.b.Group(r.Context())
	h.reply(w, r, http.StatusOK, s, err)
}

// addMemberBody is POST /v1/gateway/group/members's body and reply.
type addMemberBody struct {
	Addr string `json:"addr,omitempty"` // a multiaddr with /p2p/ID, or a peer ID
	ID   string `json:"id,omitempty"`   // the reply: the member's peer ID
}

func (h *handler) addMember(w http.ResponseWriter, r *http.Request) {
	var body addMemberBody
	if err := readJSON(w, r, &body); err != nil {
		h.fail(w, r, err)
		return
	}
	id, err := h.b.AddMember(r.Context(), body.Addr)
	h.reply(w, r, http.StatusOK, addMemberBody{ID: id}, err)
}

func (h *handler) removeMember(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	h.replyNone(w, r, h.b.RemoveMember(r.Context(), id))
}

func (h *handler) listInvoices(w http.ResponseWriter, r *http.Request) {
	list, err := h.b.Invoices(r.Context(), r.URL.Query().Get("account"))
	replyList(h, w, r, list, err)
}

// getInvoice answers an invoice as ?format=json (the default), csv or
// html.
func (h *handler) getInvoice(w http.ResponseWriter, r *http.Request) {
	inv, err := h.invoice(r)
	format := r.URL.Query().Get("format")
	if err == nil && format != "" && format != "json" && format != "csv" && format != "html" {
		err = fmt.Errorf("%w: format %q: want json, csv or html", api.ErrBadRequest, format)
	}
	if err != nil || format == "" || format == "json" {
		h.reply(w, r, http.StatusOK, inv, err)
		return
	}
	var buf bytes.Buffer
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		err = writeInvoiceCSV(&buf, inv)
	} else {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		err = invoiceHTML.Execute(&buf, inv)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Write(buf.Bytes())
}

func (h *handler) invoice(r *http.Request) (Invoice, error) {
	acct, err := pathName(r, "account")
	if err != nil {
		return Invoice{}, err
	}
	return h.b.Invoice(r.Context(), acct, r.PathValue("period"))
}

func (h *handler) closeInvoice(w http.ResponseWriter, r *http.Request) {
	acct, err := pathName(r, "account")
	var inv Invoice
	if err == nil {
		inv, err = h.b.CloseInvoice(r.Context(), acct, r.PathValue("period"))
	}
	h.reply(w, r, http.StatusOK, inv, err)
}
