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
# packets often carry checksums left to the NIC), ZEEK_ARGS (extra
# arguments, e.g. script names or redefs).
set -euo pipefail

usage() {
    sed -n '2,20s/^# \{0,1\}//p' "$0"
    exit "${1:-0}"
}

case "${1:-}" in
    -h | --help) usage 0 ;;
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
scripts=(local pano)
if [[ ${ZEEK_ONLY_FORWARDED_LOGS:-1} == 1 ]]; then
    scripts+=(Pano::only_forwarded_logs=T)
fi
extra=()
if [[ -n ${ZEEK_ARGS:-} ]]; then
    read -r -a extra <<<"$ZEEK_ARGS"
fi

run_worker() { # dir port
    mkdir -p "$1"
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
