##! JSON logs in the shape the rest of the pipeline reads: one object per
##! line, unset fields absent, times as epoch seconds, and record fields
##! joined with "_" (id_orig_h, not id.orig_h), the names
##! flowlogs-pipeline addresses, so that the shim forwards each line as it
##! is.

redef LogAscii::use_json = T;
redef LogAscii::json_timestamps = JSON::TS_EPOCH;
redef Log::default_scope_sep = "_";
