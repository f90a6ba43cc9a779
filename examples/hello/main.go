// Command hello is the smallest DMS job: it greets and prints its arguments.
// Build it for WASI with go generate (see generate.go); job.yaml runs it.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("hello from dms: args=%v\n", os.Args[1:])
}
