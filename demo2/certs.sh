#!/usr/bin/env bash
# demo2's certificates, made fresh at every start of the web server: a CA
# of its own and two server certificates it signs, each for one name under
# .test (reserved, RFC 6761: no real host can have it):
#
#   www.pano.test       valid WEB_CERT_DAYS days (365)
#   expiring.pano.test  valid WEB_EXPIRING_DAYS days (5), so that the
#                       "certificate expires within 14 days" alert fires
#
# Files written into DIR: ca.crt, ca.key, www.crt, www.key, expiring.crt,
# expiring.key (keys readable by their owner only).
#
# Usage: certs.sh DIR
set -euo pipefail

die() {
	echo "certs.sh: $*" >&2
	exit 2
}

# quiet WHAT COMMAND...: runs COMMAND, showing its output only if it fails.
quiet() {
	local what=$1 out
	shift
	out=$("$@" 2>&1) || die "openssl could not $what: $out"
}

dir=${1:-}
days=${WEB_CERT_DAYS:-365}
expiring_days=${WEB_EXPIRING_DAYS:-5}
[[ -n $dir ]] || die "usage: certs.sh DIR"
for v in WEB_CERT_DAYS:$days WEB_EXPIRING_DAYS:$expiring_days; do
	if ! [[ ${v#*:} =~ ^[0-9]+$ ]] || ((${v#*:} == 0)); then
		die "${v%%:*} must be a positive whole number of days, got '${v#*:}'"
	fi
done
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

mkdir -p "$dir"
umask 077
# P-256 keys: generated in milliseconds, and every TLS client takes them.
newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)

# The CA outlives the certificates it signs.
quiet "make the CA" openssl req -x509 "${newkey[@]}" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
	-days $((days + 1)) -subj "/O=PANO demo2/CN=PANO demo2 CA" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# issue ROLE NAME DAYS: a server certificate for NAME, signed by the CA.
issue() {
	local role=$1 name=$2 valid=$3
	quiet "make the key and request for $name" \
		openssl req -new "${newkey[@]}" -keyout "$dir/$role.key" -out "$dir/$role.csr" -subj "/O=PANO demo2/CN=$name"
	quiet "sign the certificate for $name" \
		openssl x509 -req -in "$dir/$role.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days "$valid" -out "$dir/$role.crt" \
		-extfile <(printf '%s\n' "subjectAltName=DNS:$name" "basicConstraints=critical,CA:FALSE" \
			"keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth")
	rm -f "$dir/$role.csr"
	echo "certs.sh: $name: $(openssl x509 -in "$dir/$role.crt" -noout -enddate)"
}
issue www www.pano.test "$days"
issue expiring expiring.pano.test "$expiring_days"
# Public parts readable by anyone (the workers, a client wanting the CA).
chmod 644 "$dir/ca.crt" "$dir/www.crt" "$dir/expiring.crt"
