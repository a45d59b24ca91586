// Package bpf holds the capture classifier (capture.c), the Go bindings
// that bpf2go generates from it, and the loader that prepares it for a
// snap length, a ring buffer size and a rule table.
package bpf

// The generated objects are committed; `make generate` rebuilds them and
// TestGenerateReproducible checks that the result is byte for byte the same.
//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel,bpfeb -type pkt_meta -type rule -type rules Capture capture.c -- -I./include -Wall -Werror
