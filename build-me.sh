#!/usr/bin/env bash
# Builds every image of the PANO demo that is not used as published, through
# docker compose so that the build definitions live in docker-compose.yml
# only. Published images (Kafka, flowlogs-pipeline, Prometheus, Grafana) are
# pulled afterwards so that `docker compose up -d` starts at once.
#
# Usage: ./build-me.sh [--no-pull]
set -euo pipefail
cd "$(dirname "$0")"

# service:image, one per image built here (the services sharing an image
# reuse the same build definition). A test checks this list against
# docker-compose.yml.
BUILDS=(
	agent:pano-agent:local
	zeek:pano-zeek:local
	shim:pano-shim:local
	dnsperf1:pano-dnsperf:local
	dns-local1:pano-dns-local:local
	web:pano-web:local
	webload:pano-webload:local
)

pull=1
case "${1:-}" in
"") ;;
--no-pull) pull=0 ;;
-h | --help)
	sed -n '2,7s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*)
	echo "build-me.sh: unknown argument '$1' (try --help)" >&2
	exit 2
	;;
esac

step="checking prerequisites"
on_error() {
	local rc=$?
	echo >&2
	echo "build-me.sh: FAILED while $step (exit status $rc)." >&2
	echo "build-me.sh: the output above says why; nothing after this step was built." >&2
	exit "$rc"
}
trap on_error ERR

need() {
	echo "build-me.sh: $1" >&2
	echo "build-me.sh: fix: $2" >&2
	exit 1
}

command -v docker >/dev/null 2>&1 ||
	need "docker is not installed or not on PATH" "install Docker Engine: https://docs.docker.com/engine/install/"
docker info >/dev/null 2>&1 ||
	need "cannot talk to the Docker daemon (not running, or no permission)" \
		"start it (sudo systemctl start docker) or run as a user in the docker group (sudo usermod -aG docker \$USER, then log in again)"
docker compose version >/dev/null 2>&1 ||
	need "the docker compose plugin (Compose v2) is missing" \
		"install the docker-compose-plugin package: https://docs.docker.com/compose/install/linux/"
docker buildx version >/dev/null 2>&1 ||
	need "the docker buildx plugin (BuildKit) is missing; the Go images use BuildKit cache mounts" \
		"install the docker-buildx-plugin package: https://docs.docker.com/build/install-buildx/"

compose=(docker compose --profile online --profile offline --profile web)
step="reading docker-compose.yml"
"${compose[@]}" config --quiet

i=0
for b in "${BUILDS[@]}"; do
	i=$((i + 1))
	service=${b%%:*}
	image=${b#*:}
	step="building $image (service $service)"
	echo
	echo "==> [$i/${#BUILDS[@]}] $image (service $service)"
	start=$SECONDS
	"${compose[@]}" build "$service"
	echo "==> $image built in $((SECONDS - start)) s"
done

if ((pull)); then
	step="pulling the published images"
	echo
	echo "==> pulling the published images (Kafka, flowlogs-pipeline, Prometheus, Grafana)"
	"${compose[@]}" pull --ignore-buildable
fi

trap - ERR
echo
echo "build-me.sh: all ${#BUILDS[@]} images built:"
for b in "${BUILDS[@]}"; do
	echo "  ${b#*:}"
done
echo "Next: docker compose up -d    (then open http://localhost:3000)"
