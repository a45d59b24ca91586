#!/usr/bin/env bash
# fetch.sh DIR: copy the Apache Kafka broker pinned in pom.xml (and every jar
# it needs at run time) into DIR/libs, then mark DIR complete. Maven's local
# repository (~/.m2) caches the downloads, so a second run is quick.
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

mkdir -p "$dir"
rm -rf "$dir/.complete" "$dir/libs" "$dir"/.libs.*
# Copy into a temporary folder first so that an interrupted run never
# leaves a DIR/libs that looks usable.
tmp=$(mktemp -d "$dir/.libs.XXXXXX")
log=$dir/fetch.log
if ! mvn -B -q -Dstyle.color=never -f "$here/pom.xml" \
	dependency:copy-dependencies \
	-DincludeScope=runtime \
	-DoutputDirectory="$tmp" >"$log" 2>&1; then
	cat "$log" >&2
	echo "fetch.sh: mvn failed (log above)" >&2
	exit 1
fi
mv "$tmp" "$dir/libs"
cp "$here/pom.xml" "$dir/pom.xml"
touch "$dir/.complete"
echo "kafka jars in $dir/libs ($(find "$dir/libs" -name '*.jar' | wc -l) jars)"
