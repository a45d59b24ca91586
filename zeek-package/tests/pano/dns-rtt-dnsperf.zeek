# @TEST-DOC: on the dnsperf/unbound capture every answered query has an rtt (stock Zeek: only the 15,983 NOERROR), the 44 unanswered none.
# @TEST-EXEC: gunzip -c $TRACES/dnsperf-unbound.pcap.gz >trace.pcap
# @TEST-EXEC: zeek -C -r trace.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F
# @TEST-EXEC: zeek-cut rcode_name rtt <dns.log | awk '{ k = $1 " " ($2 == "-" ? "no-rtt" : "rtt"); n[k]++ } END { for ( k in n ) print k, n[k] }' | sort >output
# @TEST-EXEC: btest-diff output
