package main

//go:generate env GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags=-s -o wordcount.wasm .
