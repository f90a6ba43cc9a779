// Package api is the local HTTP/JSON API of a DMS daemon: the wire types
// (Job, NodeInfo, Peer), the Service a daemon offers, the HTTP handler and
// loopback-only server that expose a Service, and a Client that speaks to
// them and is itself a Service.
//
// Invariants:
//   - The API is bound to a loopback address (Serve refuses any other) and
//     every request carries the daemon's bearer token, compared in constant
//     time. The address and token live in <home>/api.json (mode 0600).
//   - A job submitted through the API is self-contained: its module (and its
//     input directory, if any) are CIDs of blobs the daemon already holds.
//     Upload turns a spec that names local files into such a spec.
//   - Errors cross the wire as a status and a JSON body; the Client maps them
//     back, so errors.Is(err, ErrNotFound) holds on both sides of the API and
//     an invalid spec comes back as a *jobs.SpecError.
//
// Callers: a daemon builds NewHandler(svc, token, logger), serves it with
// Serve, and writes its Endpoint with WriteEndpoint; a CLI reads it with
// ReadEndpoint and talks to NewClient(endpoint).
package api
