##! Settings of the pcapovertcp packet source. Loaded with the plugin, so
##! they exist whether or not the package's scripts are loaded. Read when
##! the source opens: redef them on the command line or in local.zeek.

module PcapOverTcp;

export {
	## SO_RCVBUF of the stream's socket, in bytes. 0 keeps the kernel's
	## default (TCP autotuning, usually best). Above net.core.rmem_max it
	## needs CAP_NET_ADMIN; without it a warning says what was granted.
	const socket_buffer_size: count = 0 &redef;

	## Delay before the first reconnection after the server went away or
	## refused us; it doubles on each failure up to reconnect_max, and
	## starts again once a server answers with a valid stream.
	const reconnect_initial: interval = 100msec &redef;
	const reconnect_max: interval = 30sec &redef;

	## The cap instead of reconnect_max while the last connection
	## delivered a valid stream (it ended without a protocol error, after
	## the pcap header): that server is most likely restarting, and what
	## it captures before Zeek is back is lost. A corrupt stream, a
	## connection closed before the header, or no connection yet keep
	## reconnect_max.
	const reconnect_max_healthy: interval = 1sec &redef;

	## Largest record accepted, whatever the stream's snaplen claims. A
	## longer record means a corrupt stream: the connection is dropped
	## with an error and re-established.
	const max_record_size: count = 262144 &redef;

	## Bytes asked of one read() on the socket.
	const read_size: count = 262144 &redef;

	## The link type Zeek is told when the source opens (before any server
	## has answered). A stream with another link type is refused with an
	## error. 1 is Ethernet (EN10MB), what PANO's agent sends.
	const link_type: count = 1 &redef;
}
