##! The logs PANO's shim forwards to Kafka (one topic per log): dns, http
##! and ssl by default; sip and ldap are there when added to
##! Pano::forwarded_logs (and to the shim's -logs).
##!
##! With Pano::only_forwarded_logs=T, every other log stream is disabled,
##! which saves a busy sensor the cost of writing conn.log and friends.
##! The reporter log stays: it explains stream outages of the packet source.
##! Disabling a stream stops only its writes: the analyses behind it go on.
##! So ssl.log's server_cert_* fields (tls-handshake.zeek), which come from
##! the x509 file analysis, are there without x509.log and files.log.

module Pano;

export {
	## Log paths the shim reads. A path also covers its "<path>_*"
	## companions (ldap covers ldap_search).
	const forwarded_logs: set[string] = { "dns", "http", "ssl" } &redef;

	## Disable every log stream whose path is not in forwarded_logs.
	const only_forwarded_logs = F &redef;

	## Streams kept even with only_forwarded_logs.
	const always_logged: set[string] = { "reporter" } &redef;
}

function forwarded(path: string): bool
	{
	if ( path in forwarded_logs || path in always_logged )
		return T;

	for ( p in forwarded_logs )
		if ( starts_with(path, p + "_") )
			return T;

	return F;
	}

event zeek_init() &priority=-100
	{
	if ( ! only_forwarded_logs )
		return;

	local off: vector of Log::ID;

	for ( id, stream in Log::active_streams )
		{
		if ( stream?$path && ! forwarded(stream$path) )
			off += id;
		}

	for ( i in off )
		Log::disable_stream(off[i]);
	}
