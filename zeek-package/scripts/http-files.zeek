##! HTTP bodies skip Zeek's file analysis unless asked for.
##!
##! PANO's HTTP metrics come from http.log's request, status, timing and
##! body lengths, which the HTTP analyzer counts itself. The file analysis
##! of each body (a file handle per entity, MIME sniffing, the files
##! framework's events) cost half of Zeek's CPU per request: on 20,000
##! requests of h2load's mix, 230 CPU-µs per request with it and 115
##! without, with or without the agent's payload budget.
##!
##! Without it, http.log has no *_fuids, *_filenames or *_mime_types,
##! and files.log (and pe.log, ocsp.log) none of the files HTTP carried. TLS certificates
##! still go through the x509 file analysis (ssl.log's server_cert_*).
##! Pano::http_file_analysis=T (ZEEK_HTTP_FILES=1 in the image) brings
##! it back, e.g. for the site policy's file hashes.

@load base/protocols/http

module Pano;

export {
	## Hand HTTP bodies to Zeek's file analysis, as stock Zeek does.
	const http_file_analysis = F &redef;
}

# An empty file handle makes Zeek's file manager ignore the data.
# (Files::disable does not stop the HTTP analyzer's files in Zeek 8.)
function no_file_handle(c: connection, is_orig: bool): string
	{
	return "";
	}

# After base/protocols/http registered its provider (priority 5).
event zeek_init() &priority=-5
	{
	if ( http_file_analysis )
		return;

	Files::register_protocol(Analyzer::ANALYZER_HTTP,
	    Files::ProtoRegistration($get_file_handle=no_file_handle,
	                             $describe=HTTP::describe_file));
	}
