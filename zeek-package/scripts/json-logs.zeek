##! JSON logs: one object per line, field names as Zeek writes them
##! ("id.orig_h", ...), unset fields absent, times as epoch seconds.
##!
##! Rotation: Zeek run on its own does not rotate (zeekctl does). To rotate,
##! redef Log::default_rotation_interval; Zeek then renames dns.log and
##! opens a new one, which the shim follows (it tracks the file it was
##! reading across the rename and finishes it before the new one).

redef LogAscii::use_json = T;
redef LogAscii::json_timestamps = JSON::TS_EPOCH;
