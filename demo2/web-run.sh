#!/usr/bin/env bash
# demo2's web server: writes nginx's configuration (nginx.conf and
# locations.conf from this directory), the pages and fresh certificates
# (certs.sh) into WEB_DIR, checks the configuration and runs nginx in the
# foreground. Nothing here reaches beyond the host: nginx only answers.
#
# Pages: / is a small page, /big 20 KiB (20480 bytes), /missing answers
# 404 and /error 500; keep-alive is on.
#
# Environment:
#   WEB_DIR            where configuration, certificates, pages and pid go (/run/pano-web)
#   WEB_USER           user nginx's workers run as (www-data)
#   WEB_WORKERS        worker processes (2)
#   WEB_ACCESS_LOG     access log file, /dev/stdout, or off (off: at demo
#                      rates it would fill the disk)
#   WEB_CERT_DAYS      days www.pano.test's certificate is valid (365)
#   WEB_EXPIRING_DAYS  days expiring.pano.test's certificate is valid (5)
#
# Usage: web-run.sh            prepare WEB_DIR, check, run nginx
#        web-run.sh --config   only prepare WEB_DIR and print nginx.conf's path
set -euo pipefail

die() {
	echo "web-run: $*" >&2
	exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
dir=${WEB_DIR:-/run/pano-web}
user=${WEB_USER:-www-data}
workers=${WEB_WORKERS:-2}
access_log=${WEB_ACCESS_LOG:-off}

if ! [[ $workers =~ ^[0-9]+$ ]] || ((workers == 0)); then
	die "WEB_WORKERS must be a positive whole number, got '$workers'"
fi
if ! [[ $user =~ ^[a-z_][a-z0-9_-]*$ ]] || ! id -u "$user" >/dev/null 2>&1; then
	die "WEB_USER '$user' is no user of this system (set WEB_USER to one that is)"
fi
[[ $access_log == off || $access_log == /* ]] ||
	die "WEB_ACCESS_LOG must be off or an absolute path, got '$access_log'"
[[ $access_log == off ]] || access_log="$access_log pano"
for f in nginx.conf locations.conf certs.sh; do
	[[ -r $here/$f ]] || die "$here/$f is missing: web-run.sh needs its directory's files"
done
command -v nginx >/dev/null || die "nginx not found (apt-get install nginx)"

mkdir -p "$dir/html" "$dir/tmp"
conf=$dir/nginx.conf
sed -e "s|@USER@|$user|" -e "s|@WORKERS@|$workers|" -e "s|@ACCESS_LOG@|$access_log|" \
	"$here/nginx.conf" >"$conf"
cp "$here/locations.conf" "$dir/"
if grep -n '@[A-Z_]*@' "$conf"; then
	die "$conf still holds a placeholder (above): web-run.sh and nginx.conf disagree"
fi

printf '%s\n' '<!doctype html>' '<title>PANO demo2</title>' '<p>PANO demo2: a small page.</p>' >"$dir/html/index.html"
# 20480 bytes of text lines.
awk 'BEGIN { line = "PANO demo2 /big: filler, so that one response takes several TCP segments.\n";
	while (length(s) < 20480) s = s line; printf "%s", substr(s, 1, 20480) }' >"$dir/html/big.html"
chmod -R a+rX "$dir/html"

"$here/certs.sh" "$dir/certs"

if [[ ${1:-} == --config ]]; then
	echo "$conf"
	exit 0
fi

nginx -t -q -p "$dir/" -c "$conf" || die "nginx refused the configuration $conf (its message is above)"
echo "web-run: nginx serving www.pano.test (HTTP 80, HTTPS 443) and expiring.pano.test (HTTPS 443) from $dir"
exec nginx -p "$dir/" -c "$conf"
