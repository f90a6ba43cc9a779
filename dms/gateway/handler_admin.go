package gateway

import (
	"net/http"
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
