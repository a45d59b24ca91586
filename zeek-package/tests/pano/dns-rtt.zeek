# @TEST-DOC: every DNS response gets an rtt: NODATA, NXDOMAIN, TCP; records stock Zeek already timed keep their value.
# @TEST-EXEC: for t in nsec nsec3 tkey binds wks flip original_case; do zeek -C -r $TRACES/zeek-dns/$t/trace.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F && zeek-cut ts id_orig_h id_orig_p id_resp_h id_resp_p proto trans_id rtt query qtype_name rcode_name <dns.log >$t.out || exit 1; done
# @TEST-EXEC: cat nsec.out nsec3.out tkey.out binds.out wks.out flip.out original_case.out >output
# @TEST-EXEC: btest-diff output
