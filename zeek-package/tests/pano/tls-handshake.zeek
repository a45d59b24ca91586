# @TEST-DOC: ssl.log's handshake_time and server certificate fields on Zeek's TLS traces: TLS 1.2 with a certificate (to the server's Finished), TLS 1.3 (no certificate: encrypted), a handshake_failure alert, a warning alert that does not end the handshake, a ClientHello answered in HTTP (the analyzer fails); the certificate fields equal x509.log's leaf certificate.
# @TEST-EXEC: for t in tls1.2 tls13_wolfssl tls-1.2-handshake-failure tls-early-alert https-to-http; do zeek -C -r $TRACES/zeek-tls/$t.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F && zeek-cut ts version established ssl_history last_alert handshake_time server_cert_not_valid_after server_cert_subject server_cert_san_dns <ssl.log | sed "s/^/$t /" >>output || exit 1; done
# @TEST-EXEC: btest-diff output
# The same certificate as x509.log has it, where x509.log's first record is the leaf.
# @TEST-EXEC: zeek -C -r $TRACES/zeek-tls/tls1.2.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F
# @TEST-EXEC: zeek-cut server_cert_not_valid_after server_cert_subject server_cert_san_dns <ssl.log >ssl.cert
# @TEST-EXEC: zeek-cut fingerprint certificate_not_valid_after certificate_subject san_dns <x509.log | grep "^$(zeek-cut cert_chain_fps <ssl.log | cut -d, -f1)	" | cut -f2- >x509.cert
# @TEST-EXEC: test -s ssl.cert && cmp ssl.cert x509.cert
# @TEST-EXEC: zeek -C -r $TRACES/zeek-tls/tls1.2.pcap $PACKAGE Log::default_rotation_interval=0secs LogAscii::use_json=F Pano::log_tls_handshake=F && zeek-cut handshake_time server_cert_not_valid_after server_cert_subject server_cert_san_dns <ssl.log >off
# @TEST-EXEC: btest-diff off
