#!/bin/sh
# Starts a network of docker-compose in the background:
#   up.sh              the 5 nodes of docker-compose.yml (node0 a requester)
#   up.sh --gateways   the group of 3 gateways and 2 providers of
#                      docker-compose.gateways.yml (docs/gateway.md)
#
# It creates the homes that do not exist yet, running `dms init` in the
# image (with no network), starts the nodes with the PeerIDs the compose
# file needs (node0's as everyone's bootstrap; the gateways', each the
# others' group peers), waits for the first node's API and writes
# $DMS_HOMES/client/api.json: a home for the host's CLI that points at that
# node's published API, e.g.
#   bin/dms --home deploy/homes/client job run examples/hello/job.yaml
#   bin/dms --home deploy/homes-gateways/client account create acme
# Build the image first (build.sh). Run it again after that node restarts:
# its API token is new at every start.
#
# Environment: DMS_IMAGE (dms:dev), DMS_HOMES (deploy/homes, or
# deploy/homes-gateways), DMS_API_PORT (7777), DMS_GW_PORT_0..2 (8080-8082),
# and docker-compose's own, such as COMPOSE_PROJECT_NAME (deploy, or
# deploy-gateways).
set -eu
cd "$(dirname "$0")"

case "${1:-}" in
"")
	COMPOSE_FILE=docker-compose.yml names="node0 node1 node2 node3 node4" homes=homes
	;;
--gateways)
	COMPOSE_FILE=docker-compose.gateways.yml names="gw0 gw1 gw2 p1 p2" homes=homes-gateways
	COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-deploy-gateways}"
	export COMPOSE_PROJECT_NAME
	;;
*)
	echo "usage: $0 [--gateways]" >&2
	exit 2
	;;
esac
first="${names%% *}" # the node whose API is published
export COMPOSE_FILE

DMS_IMAGE="${DMS_IMAGE:-dms:dev}"
DMS_USER="$(id -u):$(id -g)" # the nodes run as you, and own their homes
mkdir -p "${DMS_HOMES:-$homes}"
DMS_HOMES="$(cd "${DMS_HOMES:-$homes}" && pwd)" # docker wants absolute paths
export DMS_IMAGE DMS_USER DMS_HOMES

for name in $names; do
	home="$DMS_HOMES/$name"
	[ -f "$home/key.pem" ] && continue
	mkdir -p "$home"
	# init prints the node's identity (the NodeInfo); PeerIDs are read from it.
	docker run --rm --network none --user "$DMS_USER" -v "$home:/data" \
		"$DMS_IMAGE" init --home /data --output json >"$home.json"
	echo "initialized $home"
done

# peer_id NAME: the top-level "peer_id" of NAME's NodeInfo, indented by two spaces.
peer_id() {
	id="$(sed -n 's/^  "peer_id": "\([^"]*\)",$/\1/p' "$DMS_HOMES/$1.json")"
	if [ -z "$id" ]; then
		echo "up.sh: no peer_id in $DMS_HOMES/$1.json; remove $DMS_HOMES/$1 and run again" >&2
		exit 1
	fi
	echo "$id"
}
if [ "$COMPOSE_FILE" = docker-compose.yml ]; then
	DMS_BOOTSTRAP_ID="$(peer_id node0)"
	export DMS_BOOTSTRAP_ID
else
	DMS_GW0_ID="$(peer_id gw0)" DMS_GW1_ID="$(peer_id gw1)" DMS_GW2_ID="$(peer_id gw2)"
	export DMS_GW0_ID DMS_GW1_ID DMS_GW2_ID
fi

# A node killed earlier left its api.json behind; only a running one is current.
if ! docker-compose ps --services --filter status=running 2>/dev/null | grep -qx "$first"; then
	rm -f "$DMS_HOMES/$first/api.json"
fi
docker-compose up -d

tries=0
while [ ! -f "$DMS_HOMES/$first/api.json" ]; do
	tries=$((tries + 1))
	if [ "$tries" -gt 30 ]; then
		echo "up.sh: $first wrote no api.json within 30s; see docker-compose logs $first" >&2
		exit 1
	fi
	sleep 1
done
token="$(sed -n 's/^  "token": "\([^"]*\)"$/\1/p' "$DMS_HOMES/$first/api.json")"
mkdir -p "$DMS_HOMES/client"
(
	umask 077
	printf '{"addr": "127.0.0.1:%s", "token": "%s"}\n' "${DMS_API_PORT:-7777}" "$token" >"$DMS_HOMES/client/api.json"
)
echo "$first ($(peer_id "$first")) API on 127.0.0.1:${DMS_API_PORT:-7777}; client home $DMS_HOMES/client"
if [ "$COMPOSE_FILE" != docker-compose.yml ]; then
	echo "gateways on http://127.0.0.1:${DMS_GW_PORT_0:-8080} (gw0), :${DMS_GW_PORT_1:-8081} (gw1), :${DMS_GW_PORT_2:-8082} (gw2)"
fi
