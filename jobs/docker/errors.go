package docker

import "errors"

var (
	// ErrClosed means the executor was closed.
	ErrClosed = errors.New("docker: executor closed")
	// ErrEngine means the Docker Engine did not answer.
	ErrEngine = errors.New("docker: engine unavailable")
	// ErrNoImage means the image a run names is not on the node. Images are
	// never pulled: they are built or loaded on the node, or shipped as an
	// archive.
	ErrNoImage = errors.New("docker: no such image on this node")
	// ErrBadInput means an Input the executor cannot run as given.
	ErrBadInput = errors.New("docker: bad input")
	// ErrOutputsTooLarge means a run left more in /outputs than the
	// executor copies out (Config.MaxOutputFiles, Config.MaxOutputBytes).
	ErrOutputsTooLarge = errors.New("docker: outputs too large")
	// ErrBroken means a warm instance can serve no more calls: its
	// container exited or was killed at its memory limit, its program broke
	// the call contract, or a call ran over its timeout. The error says
	// which, and wraps jobs.ErrTrap, jobs.ErrMemoryLimit or (for the call
	// that timed out) jobs.ErrTimeout too. Close the instance, and warm
	// another.
	ErrBroken = errors.New("docker: warm instance broken")
	// ErrInstanceClosed means a warm instance was closed.
	ErrInstanceClosed = errors.New("docker: warm instance closed")
)
