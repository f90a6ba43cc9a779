#!/bin/sh
# Stops and removes a network that up.sh started: its containers, its
# Docker network and any anonymous volume. The homes stay (the nodes keep
# their identities, jobs and, for the gateways, the group's state for the
# next up.sh) unless --homes is given.
#   down.sh [--homes]              docker-compose.yml's 5 nodes
#   down.sh --gateways [--homes]   docker-compose.gateways.yml's group
#
# Environment: as up.sh (DMS_HOMES, COMPOSE_PROJECT_NAME).
set -eu
cd "$(dirname "$0")"

homes=no
COMPOSE_FILE=docker-compose.yml dir=homes
for arg in "$@"; do
	case "$arg" in
	--homes) homes=yes ;;
	--gateways)
		COMPOSE_FILE=docker-compose.gateways.yml dir=homes-gateways
		COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-deploy-gateways}"
		export COMPOSE_PROJECT_NAME
		;;
	*)
		echo "usage: $0 [--gateways] [--homes]" >&2
		exit 2
		;;
	esac
done
export COMPOSE_FILE

# docker-compose reads the whole file even to take it down; the values no longer matter.
DMS_BOOTSTRAP_ID="${DMS_BOOTSTRAP_ID:-none}" DMS_GW0_ID="${DMS_GW0_ID:-none}"
DMS_GW1_ID="${DMS_GW1_ID:-none}" DMS_GW2_ID="${DMS_GW2_ID:-none}"
export DMS_BOOTSTRAP_ID DMS_GW0_ID DMS_GW1_ID DMS_GW2_ID
docker-compose down --volumes --remove-orphans
if [ "$homes" = yes ]; then
	rm -rf "${DMS_HOMES:-$dir}"
	echo "removed ${DMS_HOMES:-$dir}"
fi
