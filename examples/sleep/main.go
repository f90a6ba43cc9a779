// Command sleep is a DMS job that takes a while: it sleeps the number of
// seconds in its first argument, printing progress each second. Build it for
// WASI with go generate (see generate.go); job.yaml runs it.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	n := 1
	if len(os.Args) > 1 {
		var err error
		if n, err = strconv.Atoi(os.Args[1]); err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "sleep: want a number of seconds, got %q\n", os.Args[1])
			os.Exit(2)
		}
	}
	for i := 1; i <= n; i++ {
		time.Sleep(time.Second)
		fmt.Printf("%d/%d\n", i, n)
	}
	fmt.Printf("slept %d seconds\n", n)
}
