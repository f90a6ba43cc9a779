package wasm

import (
	"context"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/opendms/dms/jobs"
)

// program is a compiled module that has what a run needs.
type program struct {
	compiled  wazero.CompiledModule
	minMemory uint64 // bytes its memory starts with
}

func (p *program) close() { _ = p.compiled.Close(context.Background()) }

// compile compiles bin and checks that it is a WASI command: it imports
// nothing but WASI functions and exports a _start taking and returning nothing.
func (e *Executor) compile(ctx context.Context, bin []byte) (*program, error) {
	compiled, err := e.runtime.CompileModule(ctx, bin)
	if err != nil && e.closed.Load() {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s", jobs.ErrBadModule, firstLine(err))
	}
	p := &program{compiled: compiled}
	if p.minMemory, err = initialMemory(bin); err == nil {
		err = checkCommand(compiled)
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("%w: %w", jobs.ErrBadModule, err)
	}
	return p, nil
}

func checkCommand(m wazero.CompiledModule) error {
	for _, f := range m.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod != wasi_snapshot_preview1.ModuleName {
			return fmt.Errorf("imports %s.%s; only %s is available", mod, name, wasi_snapshot_preview1.ModuleName)
		}
	}
	if len(m.ImportedMemories()) > 0 {
		return errors.New("imports its memory; it must define its own")
	}
	start := m.ExportedFunctions()["_start"]
	if start == nil {
		return errors.New("exports no _start function; build it as a WASI command")
	}
	if len(start.ParamTypes()) > 0 || len(start.ResultTypes()) > 0 {
		return errors.New("_start must take and return nothing")
	}
	return nil
}
