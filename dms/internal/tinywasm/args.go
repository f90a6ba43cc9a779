package tinywasm

// ArgsLimit is the most bytes of arguments, the program's name and a NUL
// after each included, that Args prints.
const ArgsLimit = page - 1024

// Args assembles a WASI command that writes its arguments after the
// program's name to stdout, each followed by a newline, and nothing when
// it has none: a job whose output is its argument, as a fan-out's
// instance printing its item. It needs its arguments within ArgsLimit
// bytes (it traps otherwise).
func Args() []byte {
	// Memory: argc at 0, the argv buffer's size at 4, an iovec {buf, len}
	// at 8, nwritten at 32, argv at 64, the argv buffer at 1024.
	const p, end = 0, 1 // i32 locals
	var c code
	c.call(0, 0, 4)                                     // args_sizes_get(&argc, &bufsize)
	c.call(1, 64, 1024)                                 // args_get(argv, buf)
	c.i32(0).op(0x28, 2, 0).i32(2).op(0x49)             // argc < 2
	c.op(0x04, 0x40, 0x0f, 0x0b)                        // if: return; end
	c.i32(68).op(0x28, 2, 0).set(p)                     // p = argv[1]
	c.i32(1024).i32(4).op(0x28, 2, 0).op(0x6a).set(end) // end = buf + bufsize
	c.i32(8).get(p).op(0x36, 2, 0)                      // iovec.buf = p
	c.i32(12).get(end).get(p).op(0x6b).op(0x36, 2, 0)   // iovec.len = end - p
	// Every NUL from p to end (one after each argument) becomes a newline.
	c.op(0x02, 0x40, 0x03, 0x40)        // block loop
	c.get(p).get(end).op(0x4f, 0x0d, 1) // p >= end: break
	c.get(p).op(0x2d, 0, 0).op(0x45)    // mem[p] == 0
	c.op(0x04, 0x40)                    // if
	c.get(p).i32('\n').op(0x3a, 0, 0)   // mem[p] = '\n'
	c.op(0x0b)                          // end
	c.get(p).i32(1).op(0x6a).set(p)
	c.op(0x0c, 0, 0x0b, 0x0b)                        // continue; end loop, block
	c.i32(1).i32(8).i32(1).i32(32).op(0x10, 2, 0x1a) // fd_write(stdout, iovec, 1, &nwritten)
	return wasiCommand([]wasiImport{{"args_sizes_get", typeII}, {"args_get", typeII}, {"fd_write", typeIIII}},
		[]byte{0x01, 0x02, 0x7f}, c, 1) // 2 i32 locals
}
