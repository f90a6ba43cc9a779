#!/bin/sh
# Stops and removes the network of docker-compose.yml: its containers, its
# Docker network and any anonymous volume. The homes stay (the nodes keep
# their identities and jobs for the next up.sh) unless --homes is given.
#
# Environment: as up.sh (DMS_HOMES, COMPOSE_PROJECT_NAME).
set -eu
cd "$(dirname "$0")"

homes=no
case "${1:-}" in
"") ;;
--homes) homes=yes ;;
*)
	echo "usage: $0 [--homes]" >&2
	exit 2
	;;
esac

# docker-compose reads the whole file even to take it down; the value no longer matters.
DMS_BOOTSTRAP_ID="${DMS_BOOTSTRAP_ID:-none}"
export DMS_BOOTSTRAP_ID
docker-compose down --volumes --remove-orphans
if [ "$homes" = yes ]; then
	rm -rf "${DMS_HOMES:-homes}"
	echo "removed ${DMS_HOMES:-homes}"
fi
