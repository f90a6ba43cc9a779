// Package policy holds the rules of a function endpoint that an HTTP gateway
// publishes at /e/NAME/...: from which addresses it may be called
// (an allowlist of prefixes), when (weekly windows on a zone's wall clock),
// and how often (a daily quota that resets at midnight in a zone). The
// gateway stays thin: it builds an endpoint's Policy from its spec with
// Parse, finds the client's address with ClientIP, reads its call counter
// for Policy.Day, asks Policy.Check, and answers a *Refusal with its Status,
// Reason and Retry-After (RetryAfter rounded up to whole seconds).
//
// # Invariants
//
//   - Pure: nothing here does I/O, starts a goroutine or reads the clock.
//     Time is always passed in, so every decision can be tested and
//     replayed. The one exception to "no state" is a memo of loaded zones
//     (one *time.Location per name, so equal windows compare equal with ==).
//   - Windows follow the wall clock of their zone through DST changes: a
//     window "Sun 02:00-03:00 Europe/Berlin" is not open on the Sunday that
//     skips that hour, and open for two hours on the one that repeats it.
//     NextOpen
//     always ends and its answer is open; quota days are calendar days of
//     the policy's zone, even where a clock change skips midnight.
//   - Zone names are checked against the form of IANA names before they
//     are looked up, so no input selects a file outside the zone database
//     ("../../etc/passwd" is refused), and "Local" is refused: the gateway's
//     own zone is never what a user means. A window without a zone is UTC.
//   - Every window has one canonical String, which ParseWindow reads back to
//     an equal Window ("mon-FRI 8:00-18:00" is "Mon-Fri 08:00-18:00 UTC").
//   - Addresses are matched unmapped: ::ffff:10.1.2.3 is 10.1.2.3, and
//     ParsePrefix turns an IPv4-mapped prefix into its IPv4 form.
//   - Every parse error matches ErrInvalid (an HTTP 400) and says what was
//     wrong and the form expected.
//
// # Zone data
//
// The package imports time/tzdata (about 450 KB). Go advises leaving that
// choice to a program's main package, but a window or a quota on the wrong
// wall clock is a silent outage or a leak, and gateway images are often
// built FROM scratch or distroless, with no /usr/share/zoneinfo: a policy
// that loads on a laptop must load the same in production. The host's
// database, when present, is still preferred by time.LoadLocation; the
// embedded one is the fallback.
package policy
