#!/usr/bin/env bash
# demo2's load: every run, h2load over HTTP/1.1 (port 80) and over HTTPS
# (port 443) at the same time against the demo's web server, through the
# path list (paths.txt) at a fixed rate, then a few `openssl s_client`
# handshakes forcing TLS 1.2 and TLS 1.3 with each server name, and TLS
# 1.1 ones the server refuses. Each h2load report and a line of handshake
# counts go to the output, to compare with the dashboards.
#
# The server names are www.pano.test and expiring.pano.test (see certs.sh);
# no name is looked up: every connection goes to WEBLOAD_TARGET.
#
# Environment:
#   WEBLOAD_TARGET          the web server's address (required), e.g. 198.18.80.80
#   WEBLOAD_HTTP_PORT       its HTTP port (80)
#   WEBLOAD_HTTPS_PORT      its HTTPS port (443)
#   WEBLOAD_RATE            requests per second over HTTP, and as many over HTTPS (100)
#   WEBLOAD_CLIENTS         connections of each h2load run (4)
#   WEBLOAD_DURATION        seconds per run (60); a run sends RATE x DURATION
#                           requests, rounded up to whole passes of the list
#                           per client
#   WEBLOAD_RUNS            number of runs, 0 = forever (0)
#   WEBLOAD_HANDSHAKES      handshakes per run for each TLS version (1.2, 1.3)
#                           and each server name (3)
#   WEBLOAD_REFUSED         TLS 1.1 handshakes per run, which the server refuses (1)
#   WEBLOAD_HTTPS_PROTOCOL  h1 (HTTP/1.1) or h2 (HTTP/2) inside TLS (h1)
#   WEBLOAD_PATHS           path list (paths.txt beside this script)
set -euo pipefail

die() {
	echo "webload-run: $*" >&2
	exit 2
}

name=www.pano.test
expiring_name=expiring.pano.test

target=${WEBLOAD_TARGET:-}
http_port=${WEBLOAD_HTTP_PORT:-80}
https_port=${WEBLOAD_HTTPS_PORT:-443}
rate=${WEBLOAD_RATE:-100}
clients=${WEBLOAD_CLIENTS:-4}
duration=${WEBLOAD_DURATION:-60}
runs=${WEBLOAD_RUNS:-0}
handshakes=${WEBLOAD_HANDSHAKES:-3}
refused=${WEBLOAD_REFUSED:-1}
https_protocol=${WEBLOAD_HTTPS_PROTOCOL:-h1}
paths=${WEBLOAD_PATHS:-$(dirname "$0")/paths.txt}

[[ -n $target ]] || die "WEBLOAD_TARGET is not set (the web server's address)"
for v in WEBLOAD_HTTP_PORT:$http_port WEBLOAD_HTTPS_PORT:$https_port WEBLOAD_RATE:$rate WEBLOAD_CLIENTS:$clients \
	WEBLOAD_DURATION:$duration WEBLOAD_RUNS:$runs WEBLOAD_HANDSHAKES:$handshakes WEBLOAD_REFUSED:$refused; do
	[[ ${v#*:} =~ ^[0-9]+$ ]] || die "${v%%:*} must be a whole number, got '${v#*:}'"
done
((rate > 0 && clients > 0 && duration > 0)) || die "WEBLOAD_RATE, WEBLOAD_CLIENTS and WEBLOAD_DURATION must be positive"
case $https_protocol in
h1) https_args=(--h1) ;;
h2) https_args=() ;;
*) die "WEBLOAD_HTTPS_PROTOCOL must be h1 or h2, got '$https_protocol'" ;;
esac
[[ -r $paths ]] || die "path list $paths is not readable (set WEBLOAD_PATHS)"
mapfile -t path_list < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$paths")
((${#path_list[@]} > 0)) || die "path list $paths holds no path"
for p in "${path_list[@]}"; do
	[[ $p == /* && $p != *[[:space:]]* ]] || die "path list $paths: '$p' is not a path starting with /"
done
command -v h2load >/dev/null || die "h2load not found (apt-get install nghttp2-client)"
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

# An IPv6 address goes in brackets before a port.
host=$target
[[ $host == *:* ]] && host="[$host]"

# Whole passes of the list for every client, so each run's status counts
# are exact multiples of the list's.
pass=$((clients * ${#path_list[@]}))
requests=$(((rate * duration + pass - 1) / pass * pass))
rps=$(awk -v r="$rate" -v c="$clients" 'BEGIN { printf "%g", r / c }')

tmp=$(mktemp -d)
pids=()
stop() {
	if ((${#pids[@]})); then
		kill "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit 0
}
trap stop TERM INT

# load SCHEME PORT ARGS...: one h2load run into $tmp/SCHEME.out, run in
# the background: exec, so that stop's kill reaches h2load itself. A
# connection silent for a minute is given up (-N), so that a stalled
# server cannot hang the load.
load() {
	local scheme=$1 port=$2
	shift 2
	exec h2load "$@" -n "$requests" -c "$clients" --rps="$rps" -N 60s --connect-to="$host:$port" \
		"$scheme://$name${path_list[0]}" "${path_list[@]:1}" >"$tmp/$scheme.out" 2>&1
}

# handshake VERSION NAME ARGS...: one s_client handshake; true if established.
handshake() {
	local version=$1 sni=$2
	shift 2
	timeout 10 openssl s_client -connect "$host:$https_port" -servername "$sni" "-tls${version/./_}" -brief "$@" \
		</dev/null >"$tmp/handshake.out" 2>&1 && grep -q '^CONNECTION ESTABLISHED' "$tmp/handshake.out"
}

echo "webload-run: $target ports $http_port and $https_port, $requests requests per run over each (HTTP/1.1, HTTPS $https_protocol)" \
	"at $rate/s with $clients clients, list $paths (${#path_list[@]} paths)"
n=0
while ((runs == 0 || n < runs)); do
	n=$((n + 1))
	load http "$http_port" --h1 &
	pids=($!)
	load https "$https_port" "${https_args[@]}" &
	pids+=($!)
	for scheme in http https; do
		rc=0
		wait "${pids[0]}" || rc=$?
		pids=("${pids[@]:1}")
		echo "== webload-run: run $n $scheme"
		cat "$tmp/$scheme.out"
		# A failing h2load (bad address, no route) ends the container so
		# that its restart policy and its log show the reason.
		((rc == 0)) || die "h2load over $scheme exited with status $rc (its output is above)"
	done

	ok12=0 ok13=0 refusals=0
	for sni in "$name" "$expiring_name"; do
		for ((i = 0; i < handshakes; i++)); do
			handshake 1.2 "$sni" && ok12=$((ok12 + 1))
			handshake 1.3 "$sni" && ok13=$((ok13 + 1))
		done
	done
	# OpenSSL offers TLS 1.1 at security level 0 only. Refused means the
	# server's alert, not any failure.
	for ((i = 0; i < refused; i++)); do
		if ! handshake 1.1 "$name" -cipher 'DEFAULT:@SECLEVEL=0' && grep -q 'alert protocol version' "$tmp/handshake.out"; then
			refusals=$((refusals + 1))
		fi
	done
	echo "== webload-run: run $n handshakes: TLSv1.2 $ok12/$((2 * handshakes)) established," \
		"TLSv1.3 $ok13/$((2 * handshakes)) established, TLSv1.1 $refusals/$refused refused"
done
rm -rf "$tmp"
