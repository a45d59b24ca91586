##! Log rotation, so that a sensor's logs never fill its disk.
##!
##! Zeek renames each log once per Log::default_rotation_interval (an hour
##! here; PANO's entrypoint sets it from ZEEK_ROTATION_INTERVAL) to
##! <path>.<open time as %Y-%m-%d-%H-%M-%S>.log in the same folder and
##! starts a new one. The shim recognises exactly those names, finishes
##! each rotated file and then deletes it.

redef Log::default_rotation_interval = 1hr;

# A Zeek that starts over (crash, container restart) rotates the logs it
# finds instead of truncating them, so that the shim can still finish
# them.
redef LogAscii::enable_leftover_log_rotation = T;
