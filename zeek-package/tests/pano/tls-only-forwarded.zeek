# @TEST-DOC: with only the forwarded logs written, as the image runs Zeek, ssl.log keeps its server certificate fields: x509.log and files.log are off, the x509 analysis is not.
# @TEST-EXEC: zeek -C -r $TRACES/zeek-tls/tls1.2.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F Pano::only_forwarded_logs=T
# @TEST-EXEC: test ! -e x509.log && test ! -e files.log && test ! -e conn.log
# @TEST-EXEC: zeek-cut established handshake_time server_cert_not_valid_after server_cert_subject server_cert_san_dns <ssl.log >output
# @TEST-EXEC: btest-diff output
