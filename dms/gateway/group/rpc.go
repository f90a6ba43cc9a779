package group

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The "rpc" channel: a follower forwards applies and membership changes
// to the leader. One connection from a member to a leader carries every
// call at once, multiplexed by request ID; each message is a frame: a
// 4-byte big-endian length, then the body.
//
//	request:  id uint64 | op byte | timeout ms uint32 | payload
//	response: id uint64 | code byte | index uint64 | payload (result, or an error's text)

// MaxMessage bounds a frame: a command and its result must fit in one.
const MaxMessage = 16 << 20

const (
	reqHeader  = 8 + 1 + 4
	respHeader = 8 + 1 + 8
	// inflightPerConn bounds the requests a leader serves at once on one
	// connection; past it, the connection is not read until one finishes.
	inflightPerConn = 256
)

type op byte

const (
	opApply op = iota + 1
	opAdd
	opRemove
	opRead // the leader's applied index, for Sync
)

func (o op) String() string {
	switch o {
	case opApply:
		return "apply"
	case opAdd:
		return "add"
	case opRemove:
		return "remove"
	case opRead:
		return "read"
	}
	return fmt.Sprintf("op(%d)", byte(o))
}

// code is a call's outcome, as the leader tells it.
type code byte

const (
	codeOK        code = iota
	codeNotLeader      // not appended: the caller may retry at the leader
	codeAmbiguous      // may have been appended, and may commit
	codeNotMember      // Remove of an ID not in the configuration
	codeRefused        // not appended, and retrying will not help
)

// outcome is what executing an op gave.
type outcome struct {
	code  code
	index uint64
	data  []byte // the FSM's result, or an error's text
}

// errNotAppended: the op was not appended; the caller retries at the leader.
var errNotAppended = errors.New("group: not appended (not the leader)")

// err turns an outcome into the error a caller of Apply, Add or Remove sees.
func (o outcome) err() error {
	switch o.code {
	case codeOK:
		return nil
	case codeNotLeader:
		return errNotAppended
	case codeNotMember:
		return fmt.Errorf("%w: %s", ErrNotMember, o.data)
	case codeAmbiguous:
		return fmt.Errorf("%w: the command may or may not commit: %s", ErrNoQuorum, o.data)
	}
	return fmt.Errorf("group: refused: %s", o.data)
}

func writeFrame(w io.Writer, body []byte) error {
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err := w.Write(buf)
	return err
}

func readFrame(r io.Reader) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > MaxMessage {
		return nil, fmt.Errorf("%w: a frame of %d bytes", ErrTooLarge, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// rpcClient is this member's connection to one leader.
type rpcClient struct {
	conn net.Conn
	wmu  sync.Mutex // one frame written at a time

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan outcome
	broken  error
	done    chan struct{} // closed when the connection broke
}

func newRPCClient(conn net.Conn) *rpcClient {
	return &rpcClient{conn: conn, pending: map[uint64]chan outcome{}, done: make(chan struct{})}
}

// call sends one request and waits for its answer. sent is false only if
// no byte of the request left this member: then the op was surely not
// appended.
func (c *rpcClient) call(ctx context.Context, o op, payload []byte) (out outcome, sent bool, err error) {
	c.mu.Lock()
	if c.broken != nil {
		c.mu.Unlock()
		return outcome{}, false, c.broken
	}
	c.next++
	id, reply := c.next, make(chan outcome, 1)
	c.pending[id] = reply
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()

	timeout := time.Until(deadline(ctx))
	body := make([]byte, reqHeader, reqHeader+len(payload))
	binary.BigEndian.PutUint64(body, id)
	body[8] = byte(o)
	binary.BigEndian.PutUint32(body[9:], uint32(max(timeout, 0)/time.Millisecond))
	body = append(body, payload...)
	c.wmu.Lock()
	c.conn.SetWriteDeadline(deadline(ctx))
	err = writeFrame(c.conn, body)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return outcome{}, true, err // part of it may have left: ambiguous
	}
	select {
	case out := <-reply:
		return out, true, nil
	case <-c.done:
		c.mu.Lock()
		err := c.broken
		c.mu.Unlock()
		return outcome{}, true, err
	case <-ctx.Done():
		return outcome{}, true, ctx.Err()
	}
}

// readLoop delivers answers until the connection breaks.
func (c *rpcClient) readLoop() {
	for {
		body, err := readFrame(c.conn)
		if err == nil && len(body) < respHeader {
			err = fmt.Errorf("group: a response of %d bytes", len(body))
		}
		if err != nil {
			c.fail(err)
			return
		}
		id := binary.BigEndian.Uint64(body)
		out := outcome{code: code(body[8]), index: binary.BigEndian.Uint64(body[9:]), data: body[respHeader:]}
		c.mu.Lock()
		reply := c.pending[id]
		c.mu.Unlock()
		if reply != nil {
			reply <- out // buffered, and only one answer an ID
		}
	}
}

func (c *rpcClient) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = fmt.Errorf("group: connection to the leader: %w", err)
		close(c.done)
		c.conn.Close()
	}
}

// deadline returns ctx's deadline; callers give every ctx one.
func deadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(defaultWait)
	}
	return d
}

// serveConn answers one member's requests until the connection breaks or
// the group closes. The requests run at once, up to inflightPerConn.
func (g *Group) serveConn(conn net.Conn) {
	defer g.dropServerConn(conn)
	var wmu sync.Mutex
	slots := make(chan struct{}, inflightPerConn)
	for {
		body, err := readFrame(conn)
		if err != nil {
			return
		}
		if len(body) < reqHeader {
			g.logger.Debug("group: a malformed request", "from", conn.RemoteAddr().String(), "bytes", len(body))
			return
		}
		select {
		case slots <- struct{}{}:
		case <-g.ctx.Done():
			return
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer func() { <-slots }()
			id, o := binary.BigEndian.Uint64(body), op(body[8])
			timeout := time.Duration(binary.BigEndian.Uint32(body[9:])) * time.Millisecond
			ctx, cancel := context.WithTimeout(g.ctx, timeout)
			out := g.execute(ctx, o, body[reqHeader:])
			cancel()
			if o == opApply && out.code == codeOK {
				g.nudgeFollowers()
			}
			if len(out.data) > MaxMessage-respHeader {
				out = outcome{code: codeAmbiguous, index: out.index, data: []byte("the result is over MaxMessage")}
			}
			resp := make([]byte, respHeader, respHeader+len(out.data))
			binary.BigEndian.PutUint64(resp, id)
			resp[8] = byte(out.code)
			binary.BigEndian.PutUint64(resp[9:], out.index)
			resp = append(resp, out.data...)
			wmu.Lock()
			defer wmu.Unlock()
			conn.SetWriteDeadline(time.Now().Add(ioTimeout))
			if err := writeFrame(conn, resp); err != nil {
				conn.Close()
			}
		}()
	}
}
