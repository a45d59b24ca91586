##! TLS handshake duration and the server certificate's key facts in
##! ssl.log, so that nothing downstream has to join ssl.log with x509.log.
##!
##! handshake_time: seconds from the first ClientHello Zeek parsed to the
##! end of the handshake, which is the first of:
##!
##! - ssl_established: Zeek's own "established", raised at the first
##!   encrypted record once both sides have sent ChangeCipherSpec (TLS 1.2:
##!   the server's Finished, or the client's in a resumed session; TLS 1.3:
##!   the client's Finished, its first encrypted record). So the log's
##!   established=T records time the whole handshake, the last Finished
##!   included.
##! - a fatal alert (or an SSLv2 error), or close_notify, before that.
##!   Warning alerts (unrecognized_name, ...) do not end a handshake.
##! - otherwise the last packet of the connection Zeek saw when it gave up
##!   on the handshake: the connection ended, or the SSL analyzer failed on
##!   it (a protocol violation), whichever came first.
##!
##! Absent if no ClientHello was seen, and when the end came at the
##! ClientHello's own time: Zeek saw nothing of the connection after it
##! (a server that never answered), or a capture with equal timestamps.
##! A HelloRetryRequest, or DTLS's HelloVerifyRequest, makes the client
##! send a second ClientHello: the time counts from the first.
##!
##! server_cert_not_valid_after, server_cert_subject, server_cert_san_dns:
##! the server's leaf (first) certificate, as x509.log has it for the first
##! of cert_chain_fps. Absent when Zeek saw no server certificate: TLS 1.3
##! (certificates are encrypted), resumed sessions, handshakes that failed
##! before the Certificate message, a leaf Zeek could not parse. The
##! certificate comes from Zeek's file analysis, which runs whether or not
##! x509.log and files.log are written (Pano::only_forwarded_logs disables
##! those logs, not the analysis).

@load base/protocols/ssl
@load base/files/x509

module Pano;

export {
	## Set to F to leave ssl.log's records stock (the columns stay,
	## never set: absent from JSON lines).
	const log_tls_handshake = T &redef;
}

redef record SSL::Info += {
	## Seconds from the first ClientHello to the handshake's end.
	handshake_time: interval &log &optional;
	## The server's leaf certificate: not valid after.
	server_cert_not_valid_after: time &log &optional;
	## The server's leaf certificate: subject.
	server_cert_subject: string &log &optional;
	## The server's leaf certificate: subjectAltName DNS names.
	server_cert_san_dns: vector of string &log &optional;

	## When the first ClientHello was seen (not logged).
	pano_client_hello_ts: time &optional;
	## Whether the handshake's end was seen (not logged).
	pano_handshake_over: bool &default=F;
};

function hello_seen(c: connection)
	{
	if ( log_tls_handshake && c?$ssl && ! c$ssl?$pano_client_hello_ts )
		c$ssl$pano_client_hello_ts = network_time();
	}

function handshake_ends(c: connection, end: time)
	{
	if ( ! c?$ssl )
		return;

	local info = c$ssl;

	if ( ! info?$pano_client_hello_ts || info$pano_handshake_over )
		return;

	info$pano_handshake_over = T;

	local d = end - info$pano_client_hello_ts;

	# Zero: nothing was seen after the ClientHello (see above).
	if ( d > 0secs )
		info$handshake_time = d;
	}

# Both events: ssl_handshake_message is what ssl_history's "C" records;
# ssl_client_hello alone is raised for an SSLv2 ClientHello. Priority 0:
# after the base script's handlers (5) have made c$ssl.
event ssl_handshake_message(c: connection, is_client: bool, msg_type: count, length: count) &priority=0
	{
	if ( msg_type == SSL::CLIENT_HELLO )
		hello_seen(c);
	}

event ssl_client_hello(c: connection, version: count, record_version: count, possible_ts: time, client_random: string, session_id: string, ciphers: index_vec, comp_methods: index_vec) &priority=0
	{
	hello_seen(c);
	}

# Before the base script's priority-20 handler, which runs
# SSL::ssl_finishing (below) and then, at -5, writes the record.
event ssl_established(c: connection) &priority=25
	{
	if ( log_tls_handshake )
		handshake_ends(c, network_time());
	}

event ssl_alert(c: connection, is_client: bool, level: count, desc: count) &priority=0
	{
	# level 1 is warning; SSLv2 errors come with a level of their own.
	if ( log_tls_handshake && c?$ssl && ! c$ssl$established && (level != 1 || desc == 0) )
		handshake_ends(c, network_time());
	}

# Runs right before the record is written, whatever writes it: the
# handshake's establishment, the SSL analyzer's failure, or the
# connection's end. After the base script's priority-20 handler, which
# gathers cert_chain.
hook SSL::ssl_finishing(c: connection) &priority=10
	{
	if ( ! log_tls_handshake )
		return;

	# Not established, no fatal alert: the handshake ended with the last
	# packet Zeek saw of it.
	handshake_ends(c, c$start_time + c$duration);

	local info = c$ssl;

	if ( ! info?$cert_chain || |info$cert_chain| == 0 || ! info$cert_chain[0]?$x509 )
		return;

	local x = info$cert_chain[0]$x509;
	info$server_cert_not_valid_after = x$certificate$not_valid_after;
	info$server_cert_subject = x$certificate$subject;

	if ( x?$san && x$san?$dns )
		info$server_cert_san_dns = x$san$dns;
	}
