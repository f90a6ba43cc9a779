// Package tinywasm assembles the tiny WASI command that tests and
// benchmarks run as a job: a few hundred bytes that wazero compiles in about
// a millisecond, so they measure the network and the scheduler, not the
// compiler (the example modules are Go programs that take seconds to
// compile, ten under the race detector).
package tinywasm

import (
	"encoding/binary"
	"time"
)

// Module assembles a WASI command that sleeps for sleep (poll_oneoff on
// the monotonic clock, which the wasm executor cuts short when the run is
// cancelled) and then writes out (at most 32 bytes) to stdout.
func Module(sleep time.Duration, out string) []byte {
	if len(out) > 32 {
		panic("tinywasm: output over 32 bytes")
	}
	// Memory: iovec {buf 32, len} at 0, nwritten at 16, the text at 32, a
	// clock subscription at 64 (tag 0 at 72, clock id 1 at 80, relative
	// timeout at 88), its event at 128, nevents at 192.
	mem := make([]byte, 200)
	binary.LittleEndian.PutUint32(mem[0:], 32)
	binary.LittleEndian.PutUint32(mem[4:], uint32(len(out)))
	copy(mem[32:], out)
	binary.LittleEndian.PutUint32(mem[80:], 1)
	binary.LittleEndian.PutUint64(mem[88:], uint64(sleep))

	var code []byte
	call := func(fn byte, args ...int32) {
		for _, a := range args {
			code = append(code, 0x41) // i32.const
			code = sleb(code, a)
		}
		code = append(code, 0x10, fn, 0x1a) // call fn; drop
	}
	if sleep > 0 {
		call(1, 64, 128, 1, 192) // poll_oneoff(in, out, 1, &nevents)
	}
	call(0, 1, 0, 1, 16) // fd_write(stdout, iovs, 1, &nwritten)

	return command([]string{"fd_write", "poll_oneoff"}, code, mem)
}

// command assembles a WASI command of one page of memory, exported, holding
// mem from offset 0, whose _start runs code; it imports the WASI functions
// named, in order (function i), each of type (i32, i32, i32, i32) -> i32.
func command(imported []string, code, mem []byte) []byte {
	body := append([]byte{0x00}, code...) // no locals
	body = append(body, 0x0b)             // end

	const wasi = "wasi_snapshot_preview1"
	m := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	m = section(m, 1, []byte{0x02, 0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00})
	imports := uleb(nil, uint32(len(imported)))
	for _, name := range imported {
		imports = append(vec(vec(imports, wasi), name), 0x00, 0x00) // func of type 0
	}
	m = section(m, 2, imports)
	m = section(m, 3, []byte{0x01, 0x01})       // one function, type 1
	m = section(m, 5, []byte{0x01, 0x00, 0x01}) // one memory of one page
	exports := vec([]byte{0x02}, "memory")
	exports = append(exports, 0x02, 0x00)
	exports = vec(exports, "_start")
	exports = append(exports, 0x00, byte(len(imported)))
	m = section(m, 7, exports)
	m = section(m, 10, append(uleb([]byte{0x01}, uint32(len(body))), body...))
	data := []byte{0x01, 0x00, 0x41, 0x00, 0x0b} // one active segment at offset 0
	data = append(uleb(data, uint32(len(mem))), mem...)
	return section(m, 11, data)
}

func section(m []byte, id byte, content []byte) []byte {
	m = append(m, id)
	return append(uleb(m, uint32(len(content))), content...)
}

func vec(b []byte, s string) []byte { return append(uleb(b, uint32(len(s))), s...) }

func uleb(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func sleb(b []byte, v int32) []byte { return sleb64(b, int64(v)) }

// sleb64 appends v in signed LEB128.
func sleb64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
