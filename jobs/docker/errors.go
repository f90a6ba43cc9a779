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
	// ErrInstanceClosed means a warm instance was closed.
	ErrInstanceClosed = errors.New("docker: warm instance closed")
)
