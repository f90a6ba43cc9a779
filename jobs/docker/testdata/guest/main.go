// Command guest is the program of the docker executor's test images: its
// first argument picks what it does.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("hello from the guest")
		return
	}
	arg := func(i int) string { return os.Args[2+i] }
	switch os.Args[1] {
	case "echo": // args, environment and stdin
		env := os.Environ()
		slices.Sort(env)
		in, _ := io.ReadAll(os.Stdin)
		fmt.Printf("args=%q\nenv=%q\nstdin=%q\n", os.Args[2:], env, in)
		fmt.Fprintln(os.Stderr, "to stderr")
	case "exit":
		code, _ := strconv.Atoi(arg(0))
		fmt.Println("exiting with", code)
		os.Exit(code)
	case "hog": // allocate and touch MiB
		n, _ := strconv.Atoi(arg(0))
		var keep [][]byte
		for range n {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep), "MiB")
	case "loop":
		fmt.Println("looping")
		for {
		}
	case "burn": // hold MiB (if given) and spin for a duration
		d, _ := time.ParseDuration(arg(0))
		var keep []byte
		if len(os.Args) > 3 {
			n, _ := strconv.Atoi(arg(1))
			keep = make([]byte, n<<20)
			for i := range keep {
				keep[i] = 1
			}
		}
		spin(d)
		fmt.Println("burnt", d, "holding", len(keep)>>20, "MiB")
	case "sleep":
		fmt.Println("sleeping")
		time.Sleep(time.Hour)
	case "flood": // write bytes to stdout
		n, _ := strconv.Atoi(arg(0))
		line := []byte(strings.Repeat("x", 1023) + "\n")
		for ; n > 0; n -= len(line) {
			os.Stdout.Write(line)
		}
	case "ifaces":
		ifs, err := net.Interfaces()
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		for _, i := range ifs {
			fmt.Println(i.Name)
		}
	case "write": // write each path, saying how it went
		for _, p := range os.Args[2:] {
			if err := os.WriteFile(p, []byte("written to "+p), 0o644); err != nil {
				fmt.Println("error:", err)
			} else {
				fmt.Println("wrote", p)
			}
		}
	case "outputs": // a tree of files in /outputs, and a link out of it
		os.MkdirAll("/outputs/sub/deeper", 0o755)
		os.WriteFile("/outputs/a.txt", []byte("a"), 0o644)
		os.WriteFile("/outputs/sub/deeper/b.txt", []byte("b"), 0o600)
		os.Symlink("/etc/passwd", "/outputs/link")
	case "cat":
		for _, p := range os.Args[2:] {
			b, err := os.ReadFile(p)
			fmt.Printf("%s: %q %v\n", p, b, err)
		}
	case "threads": // hold n OS threads
		n, _ := strconv.Atoi(arg(0))
		for range n {
			go func() {
				runtime.LockOSThread()
				time.Sleep(time.Hour)
			}()
		}
		time.Sleep(500 * time.Millisecond)
		fmt.Println("holding", n, "threads")
	case "warm":
		warm()
	case "whoami":
		fmt.Println("uid", os.Getuid())
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

// warm serves calls as a warm container does, each at once: a call's MODE
// picks what it does, its stdin and ARG its input.
func warm() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 64<<20)
	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	answer := func(id uint64, stdout, stderr []byte, code int) {
		mu.Lock()
		defer mu.Unlock()
		out.Encode(map[string]any{"id": id, "stdout": stdout, "stderr": stderr, "exit_code": code})
	}
	fmt.Fprintln(os.Stderr, "warm and ready")
	var wg sync.WaitGroup
	defer wg.Wait()
	for in.Scan() {
		var c struct {
			ID    uint64
			Env   map[string]string
			Stdin []byte
		}
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintln(os.Stderr, "not a call:", err)
			continue
		}
		n, _ := strconv.Atoi(c.Env["ARG"])
		wg.Go(func() {
			switch c.Env["MODE"] {
			case "sleep":
				time.Sleep(time.Hour)
			case "exit":
				fmt.Fprintln(os.Stderr, "exiting mid-call")
				os.Exit(3)
			case "garbage":
				mu.Lock()
				defer mu.Unlock()
				fmt.Println("this is not JSON")
			case "hog":
				var keep [][]byte
				for range n {
					keep = append(keep, make([]byte, 1<<20))
					for i := range keep[len(keep)-1] {
						keep[len(keep)-1][i] = 1
					}
				}
				answer(c.ID, fmt.Appendf(nil, "allocated %d MiB", len(keep)), nil, 0)
			case "burn": // spin for n ms
				spin(time.Duration(n) * time.Millisecond)
				answer(c.ID, []byte("burnt"), nil, 0)
			case "flood": // n bytes on stdout and on stderr
				answer(c.ID, []byte(strings.Repeat("o", n)), []byte(strings.Repeat("e", n)), 0)
			default: // echo: stdin, the environment, and an exit code of ARG
				env, _ := json.Marshal(c.Env)
				answer(c.ID, c.Stdin, env, n)
			}
		})
	}
}

var sink int

// spin burns CPU for d of wall time.
func spin(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := range 1 << 16 {
			sink += i
		}
	}
}
