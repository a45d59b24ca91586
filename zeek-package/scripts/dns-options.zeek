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

# Both limits bound the queries Zeek keeps pending per connection, and so
# its memory under a flood of queries that are never answered on a few
# busy sockets: such a connection never goes idle, so nothing else frees
# them (measured: with 1000 and 65536, 95,000 unanswered queries/s on 8
# sockets grew Zeek by about 920 bytes per query, without limit). At most
# (max_pending_query_ids + 1) x (max_pending_msgs + 1) queries are pending
# per connection; past either limit Zeek logs them as unanswered, which
# during such a flood they are.

# Distinct transaction IDs with outstanding messages kept per connection
# before all of them are flushed as unmatched (stock: 50). dnsperf and
# busy forwarders keep hundreds to a thousand in flight on one socket; 4096
# leaves room for that, and bounds a connection to about 45,000 pending
# queries (tens of MB).
redef DNS::max_pending_query_ids = 4096;

# Outstanding queries (or responses without their query) kept per
# transaction ID on one connection before they are flushed to the log as
# unmatched (stock: 50). The same ID outstanding twice on one socket means
# the client gave up on the first query; a few are plenty.
redef DNS::max_pending_msgs = 10;

# Both are options: redef them again to taste.
