// Package grouptest is an in-process network for tests of gateway
// groups: members over loopback TCP, addressed by member ID, that a test
// can cut off and heal. Its Transport is a group.Transport.
package grouptest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
)

// Net is an in-process network of members over loopback TCP: a dial
// starts with the dialler's member ID (one length byte, then the ID),
// which the listening side takes as RemoteAddr. A member can be cut off
// (Partition: its connections closed, its dials and the dials to it
// refused) and healed.
type Net struct {
	mu    sync.Mutex
	addrs map[string]string // member+"/"+channel -> TCP address
	cut   map[string]bool
	conns map[string]map[net.Conn]bool // member -> open connections it is an end of
	dials map[string]*atomic.Int64     // member+"/"+channel -> dials made from member
}

// NewNet makes an empty network.
func NewNet() *Net {
	return &Net{addrs: map[string]string{}, cut: map[string]bool{}, conns: map[string]map[net.Conn]bool{}, dials: map[string]*atomic.Int64{}}
}

// Transport is member self's end of the network (a group.Transport).
func (n *Net) Transport(self string) *Transport { return &Transport{net: n, self: self} }

// Partition cuts member off from every other.
func (n *Net) Partition(member string) {
	n.mu.Lock()
	n.cut[member] = true
	conns := slices.Collect(maps.Keys(n.conns[member]))
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Heal puts a member cut off back.
func (n *Net) Heal(member string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, member)
}

// IsCut reports whether a or b is cut off.
func (n *Net) IsCut(a, b string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[a] || n.cut[b]
}

// DialCount is how many connections member dialled on channel.
func (n *Net) DialCount(member, channel string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.dials[member+"/"+channel]; c != nil {
		return c.Load()
	}
	return 0
}

func (n *Net) track(c net.Conn, members ...string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range members {
		if n.cut[m] {
			return false
		}
	}
	for _, m := range members {
		if n.conns[m] == nil {
			n.conns[m] = map[net.Conn]bool{}
		}
		n.conns[m][c] = true
	}
	return true
}

func (n *Net) untrack(c net.Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, set := range n.conns {
		delete(set, c)
	}
}

// Transport is one member's end of a Net.
type Transport struct {
	net  *Net
	self string
}

// Listen accepts the connections dialled to this member on channel.
func (t *Transport) Listen(channel string) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t.net.mu.Lock()
	t.net.addrs[t.self+"/"+channel] = ln.Addr().String()
	t.net.mu.Unlock()
	l := &testListener{Listener: ln, net: t.net, self: t.self, conns: make(chan net.Conn), done: make(chan struct{})}
	go l.run()
	return l, nil
}

// Dial connects to member's channel, unless either is cut off.
func (t *Transport) Dial(ctx context.Context, member, channel string) (net.Conn, error) {
	t.net.mu.Lock()
	addr, cut := t.net.addrs[member+"/"+channel], t.net.cut[t.self] || t.net.cut[member]
	key := t.self + "/" + channel
	if t.net.dials[key] == nil {
		t.net.dials[key] = &atomic.Int64{}
	}
	t.net.dials[key].Add(1)
	t.net.mu.Unlock()
	if cut {
		return nil, fmt.Errorf("testnet: %s or %s is cut off", t.self, member)
	}
	if addr == "" {
		return nil, fmt.Errorf("testnet: %s does not listen on %s", member, channel)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(append([]byte{byte(len(t.self))}, t.self...)); err != nil {
		c.Close()
		return nil, err
	}
	conn := &testConn{Conn: c, net: t.net, remote: member}
	if !t.net.track(conn, t.self, member) {
		c.Close()
		return nil, errors.New("testnet: cut off")
	}
	return conn, nil
}

type testListener struct {
	net.Listener
	net   *Net
	self  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *testListener) run() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return
		}
		go l.handshake(c)
	}
}

func (l *testListener) handshake(c net.Conn) {
	var n [1]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		c.Close()
		return
	}
	id := make([]byte, n[0])
	if _, err := io.ReadFull(c, id); err != nil {
		c.Close()
		return
	}
	conn := &testConn{Conn: c, net: l.net, remote: string(id)}
	if !l.net.track(conn, l.self, string(id)) {
		c.Close()
		return
	}
	select {
	case l.conns <- conn:
	case <-l.done:
		conn.Close()
	}
}

func (l *testListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *testListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type testConn struct {
	net.Conn
	net    *Net
	remote string
}

func (c *testConn) RemoteAddr() net.Addr { return addr(c.remote) }

// addr is a member ID as a net.Addr.
type addr string

func (a addr) Network() string { return "grouptest" }
func (a addr) String() string  { return string(a) }

func (c *testConn) Close() error {
	c.net.untrack(c)
	return c.Conn.Close()
}
