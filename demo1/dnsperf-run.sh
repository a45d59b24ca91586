#!/usr/bin/env bash
# Sends the demo's DNS load: dnsperf against one server, period after period,
# so that the container log carries dnsperf's own report (queries sent and
# completed, return codes, latency) to compare with the dashboard.
#
# Environment:
#   DNSPERF_SERVER   server address (required), e.g. 8.8.8.8 or 127.0.0.153
#   DNSPERF_PORT     server port (53)
#   DNSPERF_QPS      queries per second (100)
#   DNSPERF_CLIENTS  concurrent client sockets (4)
#   DNSPERF_TIMEOUT  seconds before a query counts as lost (2)
#   DNSPERF_PERIOD   seconds per report (60)
#   DNSPERF_QUERIES  query list (/demo1/queries.txt)
#   DNSPERF_RUNS     number of periods, 0 = forever (0)
set -euo pipefail

die() {
	echo "dnsperf-run: $*" >&2
	exit 2
}

server=${DNSPERF_SERVER:-}
port=${DNSPERF_PORT:-53}
qps=${DNSPERF_QPS:-100}
clients=${DNSPERF_CLIENTS:-4}
timeout=${DNSPERF_TIMEOUT:-2}
period=${DNSPERF_PERIOD:-60}
queries=${DNSPERF_QUERIES:-/demo1/queries.txt}
runs=${DNSPERF_RUNS:-0}

[[ -n $server ]] || die "DNSPERF_SERVER is not set (the DNS server to query)"
for v in port qps clients timeout period runs; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((qps > 0 && clients > 0 && period > 0 && timeout > 0)) || die "qps, clients, timeout and period must be positive"
[[ -r $queries ]] || die "query list $queries is not readable"

child=
stop() {
	# dnsperf prints its final report when interrupted.
	if [[ -n $child ]]; then
		kill -INT "$child" 2>/dev/null || true
		wait "$child" || true
	fi
	exit 0
}
trap stop TERM INT

echo "dnsperf-run: $server port $port at $qps queries/s, $clients clients, ${period}s per report, list $queries"
n=0
while ((runs == 0 || n < runs)); do
	n=$((n + 1))
	# Line-buffered, so that `docker compose logs` shows each 10 s line as it comes.
	stdbuf -oL dnsperf -s "$server" -p "$port" -d "$queries" -Q "$qps" -c "$clients" \
		-t "$timeout" -l "$period" -S 10 &
	child=$!
	# A failing dnsperf (bad address, no route) ends the container so that
	# its restart policy and its log show the reason, instead of a hot loop.
	wait "$child"
	child=
done
