package tinywasm

import "encoding/binary"

// WASI rights (path_open's fs_rights_base): wazero opens a file for
// writing only when asked for FD_WRITE, so a read-only mount opens for
// FD_READ.
const (
	rightFDRead  = 1 << 1
	rightFDWrite = 1 << 6
)

// The imports of Cat and WriteOutput, as function indexes, and the WASI
// types they have.
const (
	fnRead, fnWrite, fnOpen, fnExit = 0, 1, 2, 3
	fnStart                         = 4 // _start, after the imports
)

var fileImports = []struct {
	name string
	typ  []byte
}{
	{"fd_read", []byte{0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f}},
	{"fd_write", []byte{0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f}},
	{"path_open", []byte{0x60, 0x09, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7e, 0x7e, 0x7f, 0x7f, 0x01, 0x7f}},
	{"proc_exit", []byte{0x60, 0x01, 0x7f, 0x00}},
}

// Memory of Cat and WriteOutput: the opened fd at 16, an iovec {buf, len}
// at 32, nread at 48, another iovec at 64, nwritten at 80, the path at 256
// (at most MaxFilePath bytes), the buffer (or text) at 1024, to the end of
// the page.
const (
	memFD, memIOV, memN, memIOV2, memNW, memPath, memBuf = 16, 32, 48, 64, 80, 256, 1024
	bufSize                                              = page - memBuf
	// MaxFilePath bounds the path Cat and WriteOutput take.
	MaxFilePath = memBuf - memPath
)

// Cat assembles a WASI command that writes the file at path under the
// first directory the runtime gives it (/inputs, when the job has one) to
// stdout, and exits 1 if it cannot open it.
func Cat(path string) []byte {
	mem := fileMemory(path, nil)
	var c code
	open(&c, path, 0, rightFDRead)
	c.op(0x02, 0x40, 0x03, 0x40)                                                       // block loop
	c.i32(memFD).op(0x28, 2, 0).i32(memIOV).i32(1).i32(memN).op(0x10, fnRead, 0x0d, 1) // fd_read(fd, iovec, 1, &nread) != 0: break
	c.i32(memN).op(0x28, 2, 0).op(0x45, 0x0d, 1)                                       // nread == 0: break
	c.i32(memIOV2+4).i32(memN).op(0x28, 2, 0).op(0x36, 2, 0)                           // the second iovec's len = nread
	c.i32(1).i32(memIOV2).i32(1).i32(memNW).op(0x10, fnWrite, 0x1a)                    // fd_write(stdout, iovec2, 1, &nwritten)
	c.op(0x0c, 0, 0x0b, 0x0b)                                                          // continue; end loop, block
	return fileModule(c, mem)
}

// WriteOutput assembles a WASI command that writes text (at most 60 KiB)
// to the file at path under the first directory the runtime gives it
// (/outputs, when the job has no /inputs), and exits 1 if it cannot
// create it.
func WriteOutput(path, text string) []byte {
	if len(text) > bufSize {
		panic("tinywasm: text over the buffer")
	}
	mem := fileMemory(path, []byte(text))
	var c code
	open(&c, path, 0x01|0x08, rightFDWrite) // O_CREAT | O_TRUNC
	c.i32(memFD).op(0x28, 2, 0).i32(memIOV).i32(1).i32(memNW).op(0x10, fnWrite, 0x1a)
	return fileModule(c, mem)
}

// open appends path_open(3, 0, path, len, oflags, rights, 0, 0, &fd) and,
// if it fails, proc_exit(1).
func open(c *code, path string, oflags int64, rights uint64) {
	c.i32(3).i32(0).i32(memPath).i32(int64(len(path))).i32(oflags).i64(rights).i64(0).i32(0).i32(memFD)
	c.op(0x10, fnOpen)
	c.op(0x04, 0x40).i32(1).op(0x10, fnExit, 0x0b) // if errno != 0: proc_exit(1)
}

// fileMemory lays out the memory of Cat and WriteOutput: the path, and
// the iovec of the buffer, holding data.
func fileMemory(path string, data []byte) []byte {
	if len(path) > MaxFilePath {
		panic("tinywasm: path over MaxFilePath")
	}
	mem := make([]byte, memBuf+len(data))
	size := bufSize
	if data != nil {
		size = len(data)
	}
	binary.LittleEndian.PutUint32(mem[memIOV:], memBuf)
	binary.LittleEndian.PutUint32(mem[memIOV+4:], uint32(size))
	binary.LittleEndian.PutUint32(mem[memIOV2:], memBuf)
	copy(mem[memPath:], path)
	copy(mem[memBuf:], data)
	return mem
}

// fileModule assembles a command of fileImports whose _start runs c, with
// one page of memory holding mem from offset 0.
func fileModule(c code, mem []byte) []byte {
	body := append([]byte{0x00}, c...) // no locals
	body = append(body, 0x0b)

	const wasi = "wasi_snapshot_preview1"
	m := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	typeSec := uleb(nil, uint32(len(fileImports)+1))
	imports := uleb(nil, uint32(len(fileImports)))
	for i, imp := range fileImports {
		typeSec = append(typeSec, imp.typ...)
		imports = append(vec(vec(imports, wasi), imp.name), 0x00, byte(i)) // func of type i
	}
	typeSec = append(typeSec, 0x60, 0x00, 0x00) // _start: () -> ()
	m = section(m, 1, typeSec)
	m = section(m, 2, imports)
	m = section(m, 3, []byte{0x01, byte(len(fileImports))}) // one function, of the last type
	m = section(m, 5, []byte{0x01, 0x00, 0x01})             // one memory of one page
	exports := vec([]byte{0x02}, "memory")
	exports = append(exports, 0x02, 0x00)
	exports = vec(exports, "_start")
	exports = append(exports, 0x00, fnStart)
	m = section(m, 7, exports)
	m = section(m, 10, append(uleb([]byte{0x01}, uint32(len(body))), body...))
	data := []byte{0x01, 0x00, 0x41, 0x00, 0x0b} // one active segment at offset 0
	data = append(uleb(data, uint32(len(mem))), mem...)
	return section(m, 11, data)
}
