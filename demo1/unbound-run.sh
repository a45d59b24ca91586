#!/usr/bin/env bash
# The offline demo's DNS server: unbound answering the names of the demo's
# query list from local data, so the demo runs without internet and at rates
# public resolvers would refuse. Every name in the list gets an A record in
# 192.0.2.0/24 and an AAAA record in 2001:db8::/32 (documentation ranges),
# except the pano-nxdomain-* names, which get NXDOMAIN like any name not in
# the list. No recursion: nothing ever leaves the host.
#
# Environment:
#   DNS_LOCAL_ADDRS    listen addresses, space or comma separated (127.0.0.153 127.0.0.154)
#   DNS_LOCAL_PORT     listen port (53)
#   DNS_LOCAL_ALLOW    client prefixes allowed to query (127.0.0.0/8 ::1/128)
#   DNS_LOCAL_THREADS  unbound threads (2)
#   DNS_LOCAL_QUERIES  query list to serve (/demo1/queries.txt)
#   DNS_LOCAL_DIR      where the configuration and control socket go (/run/pano-unbound)
#   DNS_LOCAL_USER     user unbound drops to after binding ("unbound"; "" keeps root)
#
# Usage: unbound-run.sh            write the configuration, check it, run unbound
#        unbound-run.sh --config   only write the configuration and print its path
set -euo pipefail

die() {
	echo "unbound-run: $*" >&2
	exit 2
}

addrs=${DNS_LOCAL_ADDRS:-127.0.0.153 127.0.0.154}
port=${DNS_LOCAL_PORT:-53}
allow=${DNS_LOCAL_ALLOW:-127.0.0.0/8 ::1/128}
threads=${DNS_LOCAL_THREADS:-2}
queries=${DNS_LOCAL_QUERIES:-/demo1/queries.txt}
dir=${DNS_LOCAL_DIR:-/run/pano-unbound}
user=${DNS_LOCAL_USER-unbound}

[[ $port =~ ^[0-9]+$ ]] || die "DNS_LOCAL_PORT must be a number, got '$port'"
if ! [[ $threads =~ ^[0-9]+$ ]] || ((threads == 0)); then
	die "DNS_LOCAL_THREADS must be a positive number, got '$threads'"
fi
[[ -r $queries ]] || die "query list $queries is not readable"
read -r -a addr_list <<<"${addrs//,/ }"
read -r -a allow_list <<<"${allow//,/ }"
((${#addr_list[@]} > 0)) || die "DNS_LOCAL_ADDRS is empty"

mkdir -p "$dir"
conf=$dir/unbound.conf

# The distinct names of the query list, in order, without comments.
mapfile -t names < <(awk '!/^[[:space:]]*(;|$)/ { n = tolower($1); sub(/\.$/, "", n); if (!seen[n]++) print n }' "$queries")
((${#names[@]} > 0)) || die "query list $queries holds no names"
((${#names[@]} <= 254)) || die "query list $queries holds ${#names[@]} names; at most 254 get addresses"

{
	echo "# Written by unbound-run.sh from $queries; do not edit."
	echo "server:"
	for a in "${addr_list[@]}"; do
		echo "	interface: $a"
	done
	echo "	port: $port"
	echo "	do-daemonize: no"
	echo "	chroot: \"\""
	echo "	username: \"$user\""
	echo "	directory: \"$dir\""
	echo "	pidfile: \"$dir/unbound.pid\""
	echo "	use-syslog: no"
	echo "	logfile: \"\""
	echo "	verbosity: 1"
	echo "	num-threads: $threads"
	echo "	so-reuseport: yes"
	# Local data only: no iterator lookups, no validator (no trust anchor needed).
	echo "	module-config: \"iterator\""
	echo "	ratelimit: 0"
	echo "	ip-ratelimit: 0"
	echo "	access-control: 0.0.0.0/0 refuse"
	echo "	access-control: ::/0 refuse"
	for p in "${allow_list[@]}"; do
		echo "	access-control: $p allow"
	done
	# Everything not listed below is answered NXDOMAIN, never recursed.
	echo "	local-zone: \".\" static"
	i=0
	for n in "${names[@]}"; do
		i=$((i + 1))
		[[ $n == pano-nxdomain-* ]] && continue
		echo "	local-data: \"$n. 300 IN A 192.0.2.$i\""
		printf '\tlocal-data: "%s. 300 IN AAAA 2001:db8::%x"\n' "$n" "$i"
	done
	echo "remote-control:"
	echo "	control-enable: yes"
	echo "	control-interface: \"$dir/control.sock\""
	echo "	control-use-cert: no"
} >"$conf"

if [[ ${1:-} == --config ]]; then
	echo "$conf"
	exit 0
fi

unbound-checkconf "$conf" >/dev/null || die "generated configuration $conf is invalid"
echo "unbound-run: serving ${#names[@]} names from $queries on ${addr_list[*]} port $port"
exec unbound -d -c "$conf"
