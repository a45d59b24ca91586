##! DNS settings for observing busy resolvers.
##!
##! Unanswered queries are logged, as stock Zeek does: a query whose
##! response never came is written (without rcode or rtt) when its
##! connection expires. What stock Zeek gets wrong under load is the
##! matching: it gives up on a connection's outstanding queries once more
##! than 50 transaction IDs are pending at once, and logs them all as
##! unanswered although their responses are on the way. A load generator
##! or a busy forwarder keeps hundreds in flight on one socket.

@load base/protocols/dns

# Outstanding queries (or responses without their query) kept per
# transaction ID on one connection before they are flushed to the log as
# unmatched (stock: 50).
redef DNS::max_pending_msgs = 1000;

# Distinct transaction IDs with outstanding messages kept per connection
# before all of them are flushed as unmatched (stock: 50). 65536 is every
# ID there is. Both are options: redef them again to taste.
redef DNS::max_pending_query_ids = 65536;
