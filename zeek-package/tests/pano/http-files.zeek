# @TEST-DOC: HTTP bodies skip the file analysis by default: http.log keeps every request, status and body length, with no fuids or MIME types, and files.log has no HTTP file; Pano::http_file_analysis=T brings them back, with the same lengths.
# @TEST-EXEC: zeek -C -r $TRACES/zeek-http/pipelined-requests.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F && zeek-cut trans_depth status_code request_body_len response_body_len resp_fuids resp_mime_types <http.log >off && test ! -e files.log
# @TEST-EXEC: btest-diff off
# @TEST-EXEC: zeek -C -r $TRACES/zeek-http/pipelined-requests.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F Pano::http_file_analysis=T && zeek-cut trans_depth status_code request_body_len response_body_len resp_mime_types <http.log >on && zeek-cut source <files.log | sort | uniq -c >files
# @TEST-EXEC: btest-diff on
# @TEST-EXEC: btest-diff files
