// Package zeekstandin is a TEST-ONLY stand-in for Zeek's DNS analyzer.
//
// Zeek cannot be installed on the machines that run this project's tests, so
// the end-to-end test puts tshark in Zeek's place: tshark dissects the packets
// (a pcap file, or the agent's PCAP-over-TCP stream piped to "tshark -r -"),
// and this package turns tshark's DNS fields into the records Zeek's dns.log
// would hold, pairing queries with responses the way Zeek's base DNS script
// does (per connection, by transaction ID, first in first out), and writes
// them as Zeek's JSON writer does: one object per line, unset fields absent.
//
// It is not part of the product and is never shipped: the demo runs real Zeek
// with the zeek-package. Its fidelity is checked against dns.log files
// written by Zeek itself (see the tests and testdata/), and the cases where it
// cannot match are listed there with the reason.
package zeekstandin
