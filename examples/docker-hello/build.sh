#!/bin/sh
# Builds the static binary and the image dms-docker-hello:latest FROM scratch.
# With --save PATH, also writes the image as a `docker save` archive to PATH,
# for a job that ships it (image_archive: PATH) to nodes that lack it.
set -eu
cd "$(dirname "$0")"

save=""
while [ $# -gt 0 ]; do
	case "$1" in
	--save)
		[ $# -ge 2 ] || { echo "usage: $0 [--save PATH]" >&2; exit 2; }
		save="$2"
		shift 2
		;;
	*)
		echo "usage: $0 [--save PATH]" >&2
		exit 2
		;;
	esac
done

image=dms-docker-hello:latest
CGO_ENABLED=0 go build -trimpath -ldflags=-s -o docker-hello .
docker build -q -t "$image" . >/dev/null
echo "built $image"
if [ -n "$save" ]; then
	docker save -o "$save" "$image"
	echo "saved $image to $save"
fi
