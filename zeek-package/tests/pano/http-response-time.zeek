# @TEST-DOC: http.log's response_time on Zeek's HTTP traces: keep-alive requests each timed to their own reply; a POST timed to its 100 Continue; none for a request never answered (GET to an SSH server) nor for one Zeek parsed only with its reply (QUERY on a port that is not HTTP's); none at all when turned off.
# @TEST-EXEC: for t in pipelined-requests 100-continue get-to-ssh-server query-method-non-standard-port; do zeek -C -r $TRACES/zeek-http/$t.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F && zeek-cut ts id_orig_p id_resp_p trans_depth method uri status_code info_code response_time <http.log | sed "s/^/$t /" >>output || exit 1; done
# @TEST-EXEC: btest-diff output
# @TEST-EXEC: zeek -C -r $TRACES/zeek-http/pipelined-requests.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F Pano::log_http_response_time=F && zeek-cut response_time <http.log | sort | uniq -c >off
# @TEST-EXEC: btest-diff off
