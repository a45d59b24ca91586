# @TEST-DOC: the package's scripts load once, from the package, next to the plugin's options; none of them ships inside the plugin.
# @TEST-EXEC: zeek $PACKAGE %INPUT Pano::only_forwarded_logs=T >output
# @TEST-EXEC: btest-diff output

event zeek_script_loaded(path: string, level: count)
	{
	if ( /\/share\/zeek\// in path || /package-once/ in path )
		return;

	if ( /\/(Pano_PcapOverTcp|build)\/scripts\// in path )
		print fmt("plugin: %s", sub(path, /^.*\/scripts\//, ""));
	else
		print fmt("package: %s", sub(path, /^.*\/scripts\//, ""));
	}

event zeek_init()
	{
	print fmt("use_json=%s scope_sep=%s only_forwarded_logs=%s", LogAscii::use_json, Log::default_scope_sep, Pano::only_forwarded_logs);
	}
