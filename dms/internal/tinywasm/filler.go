package tinywasm

import "encoding/binary"

// The hash and generator of Filler and FillerOutput: FNV-1a over the
// arguments, then xorshift64*.
const (
	fnvOffset   = 0xcbf29ce484222325
	fnvPrime    = 0x100000001b3
	xorshiftMul = 0x2545f4914f6cdd1d
	page        = 64 << 10
)

// Filler assembles a WASI command that writes size bytes (a multiple of 8)
// to stdout, derived from its arguments: a job per argument makes outputs
// that content addressing cannot share. FillerOutput computes them.
func Filler(size int) []byte {
	if size <= 0 || size%8 != 0 || size > 256<<20 {
		panic("tinywasm: filler size must be a positive multiple of 8, at most 256 MiB")
	}
	// Memory: argc at 0, the argv buffer's size at 4, an iovec {buf, len}
	// at 8, nwritten at 32, argv at 64, the argv buffer at 1024, the
	// output from page 1 on.
	const (
		p, end, i = 0, 1, 2 // i32 locals
		x, h      = 3, 4    // i64 locals
	)
	var c code
	c.call(0, 0, 4)     // args_sizes_get(&argc, &bufsize)
	c.call(1, 64, 1024) // args_get(argv, buf)
	c.i64(fnvOffset).set(h)
	// If there are arguments after argv[0], hash the buffer from argv[1] on.
	c.i32(0).op(0x28, 2, 0).i32(2).op(0x4f).op(0x04, 0x40) // argc >= 2: if
	c.i32(68).op(0x28, 2, 0).set(p)                        // p = argv[1]
	c.i32(1024).i32(4).op(0x28, 2, 0).op(0x6a).set(end)    // end = buf + bufsize
	c.op(0x02, 0x40, 0x03, 0x40)                           // block loop
	c.get(p).get(end).op(0x4f, 0x0d, 1)                    // p >= end: break
	c.get(h).get(p).op(0x31, 0, 0).op(0x85).i64(fnvPrime).op(0x7e).set(h)
	c.get(p).i32(1).op(0x6a).set(p)
	c.op(0x0c, 0, 0x0b, 0x0b, 0x0b) // continue; end loop, block, if
	c.get(h).i64(1).op(0x84).set(x) // x = h | 1: never zero
	c.op(0x02, 0x40, 0x03, 0x40)
	c.get(i).i32(int64(size)).op(0x4f, 0x0d, 1) // i >= size: break
	for _, shift := range []struct {
		by byte
		op byte
	}{{12, 0x88}, {25, 0x86}, {27, 0x88}} { // x ^= x >> 12; x ^= x << 25; x ^= x >> 27
		c.get(x).get(x).i64(uint64(shift.by)).op(shift.op).op(0x85).set(x)
	}
	c.get(i).get(x).i64(xorshiftMul).op(0x7e).op(0x37, 3).uleb(page) // mem[page+i] = x * mul
	c.get(i).i32(8).op(0x6a).set(i)
	c.op(0x0c, 0, 0x0b, 0x0b)
	c.i32(8).i32(page).op(0x36, 2, 0).i32(12).i32(int64(size)).op(0x36, 2, 0) // iovec
	c.op(0x02, 0x40, 0x03, 0x40)
	c.i32(12).op(0x28, 2, 0).op(0x45, 0x0d, 1)          // nothing left: break
	c.i32(1).i32(8).i32(1).i32(32).op(0x10, 2, 0x0d, 1) // fd_write(stdout, iovec, 1, &nwritten) != 0: break
	c.i32(32).op(0x28, 2, 0).op(0x45, 0x0d, 1)          // nwritten == 0: break
	c.i32(8).i32(8).op(0x28, 2, 0).i32(32).op(0x28, 2, 0).op(0x6a).op(0x36, 2, 0)
	c.i32(12).i32(12).op(0x28, 2, 0).i32(32).op(0x28, 2, 0).op(0x6b).op(0x36, 2, 0)
	c.op(0x0c, 0, 0x0b, 0x0b)

	return wasiCommand([]wasiImport{{"args_sizes_get", typeII}, {"args_get", typeII}, {"fd_write", typeIIII}},
		[]byte{0x02, 0x03, 0x7f, 0x02, 0x7e}, c, uint32(1+size/page+1)) // 3 i32 and 2 i64 locals
}

// The function types of wasiCommand's modules: type 0 (i32, i32) -> i32,
// type 1 (i32, i32, i32, i32) -> i32, and type 2 () -> (), _start's.
const (
	typeII   byte = 0
	typeIIII byte = 1
)

// wasiImport is a function a module imports from WASI, and its type.
type wasiImport struct {
	name string
	typ  byte
}

// wasiCommand assembles a WASI command of pages of memory, exported, whose
// _start has locals (their declaration, encoded) and runs c; it imports
// the functions named, in order (function i).
func wasiCommand(imported []wasiImport, locals []byte, c code, pages uint32) []byte {
	body := append(append(locals[:len(locals):len(locals)], c...), 0x0b)
	const wasi = "wasi_snapshot_preview1"
	m := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	m = section(m, 1, []byte{0x03,
		0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, // type 0: (i32, i32) -> i32
		0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, // type 1: (i32, i32, i32, i32) -> i32
		0x60, 0x00, 0x00}) // type 2: () -> ()
	imports := uleb(nil, uint32(len(imported)))
	for _, imp := range imported {
		imports = append(vec(vec(imports, wasi), imp.name), 0x00, imp.typ)
	}
	m = section(m, 2, imports)
	m = section(m, 3, []byte{0x01, 0x02}) // one function, type 2
	m = section(m, 5, uleb([]byte{0x01, 0x00}, pages))
	exports := vec([]byte{0x02}, "memory")
	exports = append(exports, 0x02, 0x00)
	exports = vec(exports, "_start")
	exports = append(exports, 0x00, byte(len(imported))) // after the imports
	m = section(m, 7, exports)
	return section(m, 10, append(uleb([]byte{0x01}, uint32(len(body))), body...))
}

// FillerOutput is what Filler(size) writes when run with args (argv[0]
// excluded).
func FillerOutput(size int, args ...string) []byte {
	h := uint64(fnvOffset)
	for _, a := range args {
		for _, b := range append([]byte(a), 0) {
			h = (h ^ uint64(b)) * fnvPrime
		}
	}
	x := h | 1
	out := make([]byte, size)
	for i := 0; i < size; i += 8 {
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		binary.LittleEndian.PutUint64(out[i:], x*xorshiftMul)
	}
	return out
}

// code is a function body being assembled.
type code []byte

func (c *code) op(b ...byte) *code       { *c = append(*c, b...); return c }
func (c *code) uleb(v uint32) *code      { *c = uleb(*c, v); return c }
func (c *code) get(local byte) *code     { return c.op(0x20, local) }
func (c *code) set(local byte) *code     { return c.op(0x21, local) }
func (c *code) i32(v int64) *code        { *c = sleb64(append(*c, 0x41), v); return c }
func (c *code) i64(v uint64) *code       { *c = sleb64(append(*c, 0x42), int64(v)); return c }
func (c *code) call(fn byte, a, b int64) { c.i32(a).i32(b).op(0x10, fn, 0x1a) }
