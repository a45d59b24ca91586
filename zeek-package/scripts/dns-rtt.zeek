##! A response time for every DNS response.
##!
##! Stock Zeek sets dns.log's rtt when it handles the first answer record
##! of a response, so responses without answers (NXDOMAIN, NODATA,
##! SERVFAIL, REFUSED, ...) have none, and latency metrics built on rtt
##! silently leave them out. This script sets the same value,
##! network_time() - ts, once the response has been parsed, whether or not
##! it carried answers.
##!
##! As in stock Zeek, no rtt is set when no query was seen before the
##! response (ts is then the response's own time) or when the difference
##! is zero. A record without rcode is a query without a response.

@load base/protocols/dns

module Pano;

export {
	## Set to F to keep stock Zeek's behaviour.
	const dns_rtt_for_all_responses = T &redef;
}

# Between the base script's dns_end handlers: priority 5 marks
# saw_query/saw_reply, priority -5 writes the record.
event dns_end(c: connection, msg: dns_msg) &priority=0
	{
	if ( ! dns_rtt_for_all_responses )
		return;

	if ( ! msg$QR || msg$opcode != 0 || ! c?$dns )
		return;

	local info = c$dns;

	if ( info?$rtt || ! info$saw_query || ! info?$trans_id || info$trans_id != msg$id )
		return;

	local rtt = network_time() - info$ts;

	if ( rtt > 0secs )
		info$rtt = rtt;
	}
