// Command docker-hello is the smallest DMS container job: a static Go
// program that greets and prints its arguments. build.sh puts it in an image
// FROM scratch, dms-docker-hello:latest; job.yaml runs that image.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("hello from a DMS container: args=%v\n", os.Args[1:])
}
