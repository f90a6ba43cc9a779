package p2p

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
)

const testGW protocol.ID = "/dms/gw/test/1.0.0"

// connPair starts a server listening on testGW and a client that knows
// its addresses.
func connPair(t *testing.T) (server, client *Host, l net.Listener) {
	t.Helper()
	server = newTestHost(t, testConfig(t))
	client = newTestHost(t, testConfig(t, server.Addrs()...))
	l, err := server.Listen(testGW)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return server, client, l
}

// accepted accepts conns until l closes and hands them over.
func accepted(t *testing.T, l net.Listener) chan net.Conn {
	conns := make(chan net.Conn, acceptQueue)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	return conns
}

func dial(t *testing.T, client, server *Host) net.Conn {
	t.Helper()
	c, err := client.Dial(testCtx(t, 10*time.Second), server.ID(), server.Addrs(), testGW)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestConnEcho: a megabyte crosses a dialed conn and comes back; each
// end names the other by its PeerID, and the connection is protected
// from the connection manager while the conn is open.
func TestConnEcho(t *testing.T) {
	server, client, l := connPair(t)
	conns := accepted(t, l)
	c := dial(t, client, server)
	msg := bytes.Repeat([]byte("raft "), 200_000)
	go func() { _, _ = c.Write(msg) }()
	in := <-conns
	go func() { _, _ = io.Copy(in, in); _ = in.Close() }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %v, %d bytes equal: %t", err, len(got), bytes.Equal(got, msg))
	}
	for _, tc := range []struct{ what, got, want string }{
		{"dialed remote", c.RemoteAddr().String(), server.ID()}, {"dialed local", c.LocalAddr().String(), client.ID()},
		{"accepted remote", in.RemoteAddr().String(), client.ID()}, {"accepted local", in.LocalAddr().String(), server.ID()},
		{"listener", l.Addr().String(), server.ID()},
	} {
		if tc.got != tc.want {
			t.Errorf("%s address %s, want %s", tc.what, tc.got, tc.want)
		}
	}
	if !client.host.ConnManager().IsProtected(server.host.ID(), keepTag) {
		t.Fatal("an open conn's connection is not protected")
	}
	_ = c.Close()
	if client.host.ConnManager().IsProtected(server.host.ID(), keepTag) {
		t.Fatal("a closed conn's connection is still protected")
	}
}

// TestConnDeadlines: a read past its deadline and a write the peer does
// not read past its own fail with a timeout, and the conn reads again
// once the deadline is lifted.
func TestConnDeadlines(t *testing.T) {
	server, client, l := connPair(t)
	conns := accepted(t, l)
	c := dial(t, client, server)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	in := <-conns
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("read deadline of 50ms took %s", d)
	}
	_ = c.SetReadDeadline(time.Time{})
	if _, err := in.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if b := make([]byte, 2); !readSome(c, b) || b[0] != 'y' {
		t.Fatalf("read after the deadline was lifted: %q", b)
	}
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := c.Write(make([]byte, 64<<20)) // more than the stream windows: in does not read
	if !isTimeout(err) {
		t.Fatalf("write past its deadline: %v, want a timeout", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

func readSome(c net.Conn, b []byte) bool {
	n, err := c.Read(b)
	return err == nil && n > 0
}

// TestListenerClose: Close unblocks Accept with net.ErrClosed and stops
// serving the protocol, which may then be listened on again, but not
// twice at once; Close of the host unblocks Accept too.
func TestListenerClose(t *testing.T) {
	server, client, l := connPair(t)
	if _, err := server.Listen(testGW); !errors.Is(err, ErrProtocolInUse) {
		t.Fatalf("a second Listen: %v, want ErrProtocolInUse", err)
	}
	errs := make(chan error, 1)
	go func() { _, err := l.Accept(); errs <- err }()
	_ = l.Close()
	if err := waitErr(t, errs); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v", err)
	}
	if c, err := client.Dial(testCtx(t, 10*time.Second), server.ID(), server.Addrs(), testGW); err == nil {
		_, _ = c.Write([]byte("x"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("a conn to a closed listener reads: %v", err)
		}
		_ = c.Close()
	}
	l2, err := server.Listen(testGW)
	if err != nil {
		t.Fatalf("Listen after Close: %v", err)
	}
	go func() { _, err := l2.Accept(); errs <- err }()
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, errs); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed host: %v", err)
	}
}

func waitErr(t *testing.T, errs chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return")
		return nil
	}
}

// TestListenerQueue: past acceptQueue streams waiting for Accept, one
// more is reset and counted as overloaded.
func TestListenerQueue(t *testing.T) {
	server, client, _ := connPair(t)
	for range acceptQueue + 1 {
		if _, err := dial(t, client, server).Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "a stream past the queue refused", func() bool {
		return server.Stats().Streams[ReasonOverloaded] == 1
	})
}

// TestDialUnreachable: a dial to a peer nobody can reach, by address or
// through the DHT, fails within its context.
func TestDialUnreachable(t *testing.T) {
	_, client, _ := connPair(t)
	nobody := newTestHost(t, testConfig(t))
	id := nobody.ID()
	_ = nobody.Close()
	for _, addrs := range [][]string{nil, {"/ip4/192.0.2.1/tcp/4001"}} { // 192.0.2.0/24: TEST-NET, unrouted
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		start := time.Now()
		_, err := client.Dial(ctx, id, addrs, testGW)
		cancel()
		if err == nil {
			t.Fatalf("dial with addresses %v reached a closed host", addrs)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Fatalf("dial with addresses %v failed after %s, past its 500ms context", addrs, d)
		}
	}
}

// TestGatewayStreamLimits: the resource manager lets a peer hold
// gwStreamsPerPeer streams each way on a protocol of no limits of its
// own, as the gateways' protocols are.
func TestGatewayStreamLimits(t *testing.T) {
	l := resourceLimits(1024).ToPartialLimitConfig()
	for name, v := range map[string]int{
		"protocol-peer in": int(l.ProtocolPeerDefault.StreamsInbound), "protocol-peer out": int(l.ProtocolPeerDefault.StreamsOutbound),
		"protocol-peer": int(l.ProtocolPeerDefault.Streams), "peer in": int(l.PeerDefault.StreamsInbound),
		"protocol in": int(l.ProtocolDefault.StreamsInbound),
	} {
		if v < gwStreamsPerPeer {
			t.Errorf("%s streams limited to %d, want at least %d", name, v, gwStreamsPerPeer)
		}
	}
}
