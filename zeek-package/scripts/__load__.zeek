##! PANO's Zeek package: logs in the shape the rest of the pipeline reads.
##!
##! - json-logs: one JSON object per line (LogAscii::use_json).
##! - dns-options: DNS settings for busy resolvers.
##! - dns-rtt: a response time for every DNS response, not only those
##!   carrying answers.
##! - http-timing: http.log's response_time, request to first reply.
##! - http-files: HTTP bodies skip Zeek's file analysis (half of Zeek's
##!   CPU per request; PANO's metrics do not use it).
##! - tls-handshake: ssl.log's handshake_time, and the server
##!   certificate's expiry, subject and DNS names (no join with x509.log).
##! - forwarded-logs: which logs the shim forwards, and optionally only
##!   those are written.
##! - log-rotation: logs rotate hourly; a restarted Zeek rotates the
##!   logs it finds instead of overwriting them.
##! - node-name: every log line says which node wrote it ("_node",
##!   from PANO_NODE or the host name).
##!
##! The packet source's own settings (PcapOverTcp::*) come with the
##! plugin and do not need this package's scripts.

@load ./json-logs
@load ./dns-options
@load ./dns-rtt
@load ./http-timing
@load ./http-files
@load ./tls-handshake
@load ./forwarded-logs
@load ./log-rotation
@load ./node-name
