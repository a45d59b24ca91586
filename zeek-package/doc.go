// Package zeekpackage holds the tests of the Zeek package in this
// directory: the Dockerfile's build steps, the btests and every script run
// by real Zeek; the packet-source core (C++, built with g++ under
// AddressSanitizer and UndefinedBehaviorSanitizer) driven against the Go
// PCAP-over-TCP server and against hand-made malformed streams; and the
// Zeek-independent half of the DNS response-time script.
//
// The package itself (zkg.meta, configure, plugin/, scripts/) is built by
// Zeek's tooling inside the Zeek image; see README.md.
package zeekpackage
