##! PANO's Zeek package: logs in the shape the rest of the pipeline reads.
##!
##! - json-logs: one JSON object per line (LogAscii::use_json).
##! - dns-options: DNS settings for busy resolvers.
##! - dns-rtt: a response time for every DNS response, not only those
##!   carrying answers.
##! - forwarded-logs: which logs the shim forwards, and optionally only
##!   those are written.
##! - log-rotation: logs rotate hourly; a restarted Zeek rotates the
##!   logs it finds instead of overwriting them.
##!
##! The packet source's own settings (PcapOverTcp::*) come with the
##! plugin and do not need this package's scripts.

@load ./json-logs
@load ./dns-options
@load ./dns-rtt
@load ./forwarded-logs
@load ./log-rotation
