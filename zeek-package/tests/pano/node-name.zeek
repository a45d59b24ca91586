# @TEST-DOC: every log line names the node: _node is PANO_NODE (btest.cfg sets it), else Pano::node_name when redefined.
# @TEST-EXEC: zeek -C -r $TRACES/zeek-dns/flip/trace.pcap $PACKAGE Log::default_rotation_interval=0secs && grep -c '^{"_node":"btest",' dns.log >output
# @TEST-EXEC: rm -f dns.log && zeek -C -r $TRACES/zeek-dns/flip/trace.pcap $PACKAGE Log::default_rotation_interval=0secs Pano::node_name=sensor-7 && grep -c '^{"_node":"sensor-7",' dns.log >>output
# @TEST-EXEC: btest-diff output
