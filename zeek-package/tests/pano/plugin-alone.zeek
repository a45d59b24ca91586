# @TEST-DOC: the plugin alone is stock Zeek plus the packet source's options: the one script it loads is its own options file, and the options take command-line redefs.
# @TEST-EXEC: zeek %INPUT PcapOverTcp::socket_buffer_size=4096 PcapOverTcp::reconnect_max=5sec >output
# @TEST-EXEC: btest-diff output

event zeek_script_loaded(path: string, level: count)
	{
	# Zeek's own scripts, and this test's.
	if ( /\/share\/zeek\// in path || /plugin-alone/ in path )
		return;

	print fmt("loaded: %s", sub(path, /^.*\/(Pano_PcapOverTcp|build)\//, ""));
	}

event zeek_init()
	{
	print fmt("socket_buffer_size=%s reconnect_max=%s use_json=%s", PcapOverTcp::socket_buffer_size, PcapOverTcp::reconnect_max, LogAscii::use_json);
	}
