##! A response time for every HTTP request that got a reply.
##!
##! http.log gains response_time: seconds from the request (the record's
##! ts, when Zeek parsed the request line) to the first reply Zeek parsed
##! for it (the http_reply event: the packet completing the status line).
##!
##! - Replies are matched to requests by the base script (pipelined and
##!   keep-alive requests each get their own record); this script reads
##!   the record the base script chose, so it times the same pairs.
##! - A 1xx informational reply (100 Continue) is a reply: the time is to
##!   it, not to the final reply that follows on the same record.
##! - Absent when no reply was seen (no status_code), and when a reply came
##!   for a request Zeek never saw (no method: the record was made by the
##!   reply, its ts is the reply's own time).
##! - Absent, too, when Zeek parsed the request only when the reply came:
##!   on a port that is not HTTP's, Zeek attaches its HTTP analyzer when a
##!   signature matches; a request whose method the client-side signature
##!   does not know (QUERY, ...) is then parsed, with the reply, once the
##!   reply matches the server-side one, and its ts is the reply's time.
##!   No time is better than a false zero there.

@load base/protocols/http

module Pano;

export {
	## Set to F to leave http.log's records stock (the column stays,
	## never set: absent from JSON lines).
	const log_http_response_time = T &redef;
}

redef record HTTP::Info += {
	## Seconds from the request to the first reply matched to it.
	response_time: interval &log &optional;

	## Whether a reply was matched to this request before (not logged).
	pano_replied: bool &default=F;
};

# After the base script's handler (priority 5), which has matched the reply
# to its request and made that record c$http.
event http_reply(c: connection, version: string, code: count, reason: string) &priority=0
	{
	if ( ! log_http_response_time || ! c?$http )
		return;

	local info = c$http;

	# Only the first reply: a final reply after a 1xx is not timed.
	if ( info$pano_replied || ! info?$method )
		return;

	info$pano_replied = T;

	local rt = network_time() - info$ts;

	# Zero: the request was parsed with the reply (see above).
	if ( rt > 0secs )
		info$response_time = rt;
	}
