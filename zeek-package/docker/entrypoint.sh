#!/usr/bin/env bash
# Runs Zeek on PANO's PCAP-over-TCP stream(s), writing JSON logs.
#
#   ZEEK_WORKERS=1 (default): one process reading
#       pcapovertcp::$PCA_SERVER_ADDR:$PCA_SERVER_PORT, logs in $ZEEK_LOG_DIR
#       (/zeek/logs/dns.log).
#   ZEEK_WORKERS=N > 1: N processes, worker i (0-based) reading the agent's
#       stream i on port PCA_SERVER_PORT+i, logs in $ZEEK_LOG_DIR/worker-i/
#       (the shim reads them with SHIM_LOGS=/zeek/logs/worker-*/dns.log).
#       One Zeek process handles about 60,000 DNS packets/s; the agent
#       splits the capture by flow so each stream is a whole conversation.
#
# Other settings: PCA_SERVER_ADDR (127.0.0.1), PCA_SERVER_PORT (57012),
# ZEEK_LOG_DIR (/zeek/logs), ZEEK_ONLY_FORWARDED_LOGS (1: write only the
# logs the shim forwards), ZEEK_IGNORE_CHECKSUMS (1: -C, since captured
# packets often carry checksums left to the NIC), ZEEK_LOAD_SITE (0: only
# the package; 1: Zeek's site policy "local" too, which hashes every file,
# looks the hashes up in Team Cymru's registry over DNS and validates
# certificates, at a cost per HTTP request), ZEEK_HTTP_FILES (as
# ZEEK_LOAD_SITE: 1 hands HTTP bodies to Zeek's file analysis, which the
# site policy's hashes need and PANO's metrics do not; it costs about
# half of Zeek's CPU per HTTP request), ZEEK_ARGS (extra arguments, e.g.
# script names or redefs).
#
# Rotation, so that the logs never fill the disk:
#   ZEEK_ROTATION_INTERVAL (1hr): Log::default_rotation_interval, a Zeek
#       interval ("10mins", "30secs"); "0secs" turns rotation off. Zeek
#       renames dns.log to dns.YYYY-MM-DD-HH-MM-SS.log (its open time) in
#       the same folder and starts a new dns.log (once it has a record).
#       Zeek also rotates on SIGTERM; what it flushes while exiting goes to
#       a new dns.log, which the next Zeek rotates instead of overwriting.
#       The shim finishes each rotated file, then deletes it.
#   ZEEK_ROTATED_RETENTION (120): minutes a rotated file may stay unread.
#       At each rotation, rotated files older than that are deleted even
#       if the shim never read them (shim down or far behind), each one
#       logged as lost data; 0 keeps them forever.
#   ZEEK_LOG_GROUP (65532, the shim image's group): the log folders'
#       group, which may delete files there (set-group-ID, mode 2775).
set -euo pipefail

usage() {
    sed -n '2,41s/^# \{0,1\}//p' "$0"
    exit "${1:-0}"
}

# Rotated names as Zeek's ASCII writer makes them: <log>.<open time>.log.
rotated_re='.*/[^/]*\.[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}\.log'

# prune_rotated runs as Zeek's rotation postprocessor, in Zeek's log
# folder (Zeek appends the rotated file's details: unused). A file still
# there after the retention was never finished by the shim: say so loudly.
prune_rotated() {
    local minutes=${ZEEK_ROTATED_RETENTION:-120} f lines
    [[ $minutes =~ ^[0-9]+$ ]] && ((minutes > 0)) || return 0
    while IFS= read -r -d '' f; do
        lines=$(wc -l <"$f" 2>/dev/null || echo "?")
        if rm -f -- "$f"; then
            echo "pano-zeek: DATA LOSS: deleted rotated log $PWD/${f#./} ($lines lines) unread after ${minutes} minutes; is the shim running?" >&2
        fi
    done < <(find . -maxdepth 1 -type f -regextype posix-extended -regex "$rotated_re" -mmin "+$minutes" -print0)
}

case "${1:-}" in
    -h | --help) usage 0 ;;
    --prune-rotated)
        prune_rotated
        exit 0
        ;;
esac

workers=${ZEEK_WORKERS:-1}
addr=${PCA_SERVER_ADDR:-127.0.0.1}
port=${PCA_SERVER_PORT:-57012}
logdir=${ZEEK_LOG_DIR:-/zeek/logs}
zeek=${ZEEK_BIN:-zeek}

if ! [[ $workers =~ ^[1-9][0-9]*$ ]]; then
    echo "ZEEK_WORKERS must be a positive integer, got '$workers'" >&2
    exit 64
fi
if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port + workers - 1 > 65535)); then
    echo "PCA_SERVER_PORT must leave room for $workers port(s) below 65536, got '$port'" >&2
    exit 64
fi
# An IPv6 address goes in brackets in the source's HOST:PORT.
if [[ $addr == *:* && $addr != \[* ]]; then
    addr="[$addr]"
fi

args=()
if [[ ${ZEEK_IGNORE_CHECKSUMS:-1} == 1 ]]; then
    args+=(-C)
fi
scripts=(pano)
if [[ ${ZEEK_LOAD_SITE:-0} == 1 ]]; then
    scripts=(local pano)
fi
if [[ ${ZEEK_HTTP_FILES:-${ZEEK_LOAD_SITE:-0}} == 1 ]]; then
    scripts+=(Pano::http_file_analysis=T)
fi
if [[ ${ZEEK_ONLY_FORWARDED_LOGS:-1} == 1 ]]; then
    scripts+=(Pano::only_forwarded_logs=T)
fi
rotation=${ZEEK_ROTATION_INTERVAL:-1hr}
retention=${ZEEK_ROTATED_RETENTION:-120}
if ! [[ $rotation =~ ^[0-9]+(\.[0-9]+)?\ ?[a-z]+$ ]]; then
    echo "ZEEK_ROTATION_INTERVAL must be a Zeek interval such as 1hr or 30secs, got '$rotation'" >&2
    exit 64
fi
if ! [[ $retention =~ ^[0-9]+$ ]]; then
    echo "ZEEK_ROTATED_RETENTION must be a number of minutes, got '$retention'" >&2
    exit 64
fi
export ZEEK_ROTATED_RETENTION=$retention
self=$(realpath "$0")
scripts+=("Log::default_rotation_interval=$rotation"
    "Log::default_rotation_postprocessor_cmd=$self --prune-rotated")
group=${ZEEK_LOG_GROUP:-65532}

# logdir_for DIR: creates DIR so that the shim (group $group) may delete
# the rotated files in it.
logdir_for() {
    mkdir -p "$1"
    if ! chgrp "$group" "$1" 2>/dev/null || ! chmod 2775 "$1"; then
        echo "warning: cannot give $1 to group $group; the shim may be unable to delete rotated logs" >&2
    fi
}
extra=()
if [[ -n ${ZEEK_ARGS:-} ]]; then
    read -r -a extra <<<"$ZEEK_ARGS"
fi

run_worker() { # dir port
    logdir_for "$1"
    cd "$1"
    exec "$zeek" "${args[@]}" -i "pcapovertcp::$addr:$2" "${scripts[@]}" "${extra[@]}"
}

if ((workers == 1)); then
    run_worker "$logdir" "$port"
fi

pids=()
# shellcheck disable=SC2317 # invoked by the trap
stop() {
    trap - TERM INT
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait
    exit 0
}
trap stop TERM INT

logdir_for "$logdir"
for ((i = 0; i < workers; i++)); do
    (run_worker "$logdir/worker-$i" "$((port + i))") &
    pids+=("$!")
done
echo "started $workers Zeek workers on pcapovertcp::$addr:$port..$((port + workers - 1)), logs in $logdir/worker-*/" >&2

# One worker ending is a failure of the whole: stop the others and report
# it, so that the container's restart policy starts everything afresh.
status=0
wait -n || status=$?
echo "a Zeek worker exited (status $status); stopping the others" >&2
trap - TERM INT
kill -TERM "${pids[@]}" 2>/dev/null || true
wait || true
exit $((status == 0 ? 1 : status))
