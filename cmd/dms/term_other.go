//go:build !unix

package main

import "os"

// termWidth is 0: unknown; lines are not clipped.
func termWidth(*os.File) int { return 0 }
