# @TEST-DOC: zeek -i pcapovertcp:: reads a served trace and logs what zeek -r logs for it.
# @TEST-EXEC: zeek -C -r $TRACES/zeek-dns/nsec/trace.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F && zeek-cut ts trans_id rtt query rcode_name <dns.log >offline.out && rm dns.log
# @TEST-EXEC: btest-bg-run server $SCRIPTS/serve-pcap $TRACES/zeek-dns/nsec/trace.pcap ../port
# @TEST-EXEC: for i in $(seq 100); do test -s port && break; sleep 0.1; done; test -s port
# @TEST-EXEC: timeout 60 zeek -C -i pcapovertcp::127.0.0.1:$(cat port) $PACKAGE %INPUT Log::default_rotation_interval=0secs LogAscii::use_json=F
# @TEST-EXEC: btest-bg-wait 30
# @TEST-EXEC: zeek-cut ts trans_id rtt query rcode_name <dns.log >live.out
# @TEST-EXEC: cmp offline.out live.out
# @TEST-EXEC: grep -q 'connected to 127.0.0.1' reporter.log

# The trace holds two transactions; stop once both are logged.
global logged = 0;

event DNS::log_dns(rec: DNS::Info)
	{
	if ( ++logged == 2 )
		terminate();
	}
