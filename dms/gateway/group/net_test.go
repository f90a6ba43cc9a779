package group

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

// testNet is an in-process network of members over loopback TCP: a dial
// starts with the dialler's member ID (one length byte, then the ID),
// which the listening side takes as RemoteAddr. A member can be cut off
// (partition: its connections closed, its dials and the dials to it
// refused) and healed.
type testNet struct {
	mu    sync.Mutex
	addrs map[string]string // member+"/"+channel -> TCP address
	cut   map[string]bool
	conns map[string]map[net.Conn]bool // member -> open connections it is an end of
	dials map[string]*atomic.Int64     // member+"/"+channel -> dials made from member
}

func newTestNet() *testNet {
	return &testNet{addrs: map[string]string{}, cut: map[string]bool{}, conns: map[string]map[net.Conn]bool{}, dials: map[string]*atomic.Int64{}}
}

func (n *testNet) transport(self string) Transport { return &testTransport{net: n, self: self} }

// partition cuts member off from every other.
func (n *testNet) partition(member string) {
	n.mu.Lock()
	n.cut[member] = true
	conns := slices.Collect(maps.Keys(n.conns[member]))
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (n *testNet) heal(member string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, member)
}

// dialCount is how many connections member dialled on channel.
func (n *testNet) dialCount(member, channel string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.dials[member+"/"+channel]; c != nil {
		return c.Load()
	}
	return 0
}

func (n *testNet) track(c net.Conn, members ...string) bool {
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

func (n *testNet) untrack(c net.Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, set := range n.conns {
		delete(set, c)
	}
}

type testTransport struct {
	net  *testNet
	self string
}

func (t *testTransport) Listen(channel string) (net.Listener, error) {
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

func (t *testTransport) Dial(ctx context.Context, member, channel string) (net.Conn, error) {
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
	net   *testNet
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
	net    *testNet
	remote string
}

func (c *testConn) RemoteAddr() net.Addr { return memberAddr(c.remote) }

func (c *testConn) Close() error {
	c.net.untrack(c)
	return c.Conn.Close()
}
