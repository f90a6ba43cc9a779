package tinywasm

import "encoding/binary"

// EchoHeader is what Echo writes before the body it echoes: a CGI header
// block.
const EchoHeader = "Content-Type: text/plain\n\n"

// EchoLimit is the most of its stdin Echo reads and echoes.
const EchoLimit = 63 << 10

// Echo assembles a WAGI function of a few hundred bytes: it writes
// EchoHeader, then what one read of its stdin returned (at most EchoLimit
// bytes: all of a body the executor holds in memory). It is the "tiny echo"
// of the function benchmarks: it measures the gateway, the network and the
// executor, not a language runtime's start-up.
func Echo() []byte {
	// Memory: the header's iovec {256, len} at 0, nwritten at 16, the read
	// iovec {1024, EchoLimit} at 32, nread at 48, the body's iovec {1024,
	// nread} at 64, the header text at 256, the body at 1024.
	mem := make([]byte, 256+len(EchoHeader))
	binary.LittleEndian.PutUint32(mem[0:], 256)
	binary.LittleEndian.PutUint32(mem[4:], uint32(len(EchoHeader)))
	binary.LittleEndian.PutUint32(mem[32:], 1024)
	binary.LittleEndian.PutUint32(mem[36:], EchoLimit)
	binary.LittleEndian.PutUint32(mem[64:], 1024)
	copy(mem[256:], EchoHeader)

	var c code
	c.call4(0, 1, 0, 1, 16)                // fd_write(stdout, header iovec, 1, &nwritten)
	c.call4(1, 0, 32, 1, 48)               // fd_read(stdin, read iovec, 1, &nread)
	c.i32(68).i32(48).op(0x28, 0x02, 0x00) // i32.load nread
	c.op(0x36, 0x02, 0x00)                 // i32.store into the body iovec's len
	c.call4(0, 1, 64, 1, 16)               // fd_write(stdout, body iovec, 1, &nwritten)
	return command([]string{"fd_write", "fd_read"}, c, mem)
}

// call4 calls imported function fn with four i32 arguments and drops its result.
func (c *code) call4(fn byte, a, b, d, e int64) {
	c.i32(a).i32(b).i32(d).i32(e).op(0x10, fn, 0x1a)
}
