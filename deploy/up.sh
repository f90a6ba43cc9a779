#!/bin/sh
# Starts the 5-node network of docker-compose.yml in the background.
#
# It creates the homes node0..node4 that do not exist yet, running
# `dms init` in the image (with no network), starts the nodes with node0's
# PeerID as everyone's bootstrap, waits for node0's API and writes
# $DMS_HOMES/client/api.json: a home for the host's CLI that points at
# node0's published API, e.g.
#   bin/dms --home deploy/homes/client job run examples/hello/job.yaml
# Build the image first (build.sh). Run it again after node0 restarts: its
# API token is new at every start.
#
# Environment: DMS_IMAGE (dms:dev), DMS_HOMES (deploy/homes), DMS_API_PORT
# (7777), and docker-compose's own, such as COMPOSE_PROJECT_NAME (deploy).
set -eu
cd "$(dirname "$0")"

DMS_IMAGE="${DMS_IMAGE:-dms:dev}"
DMS_USER="$(id -u):$(id -g)" # the nodes run as you, and own their homes
mkdir -p "${DMS_HOMES:-homes}"
DMS_HOMES="$(cd "${DMS_HOMES:-homes}" && pwd)" # docker wants absolute paths
export DMS_IMAGE DMS_USER DMS_HOMES

for i in 0 1 2 3 4; do
	home="$DMS_HOMES/node$i"
	[ -f "$home/key.pem" ] && continue
	mkdir -p "$home"
	# init prints the node's identity (the NodeInfo); node0's PeerID is read from it.
	docker run --rm --network none --user "$DMS_USER" -v "$home:/data" \
		"$DMS_IMAGE" init --home /data --output json >"$home.json"
	echo "initialized $home"
done

# The top-level "peer_id" of the NodeInfo, indented by two spaces.
DMS_BOOTSTRAP_ID="$(sed -n 's/^  "peer_id": "\([^"]*\)",$/\1/p' "$DMS_HOMES/node0.json")"
if [ -z "$DMS_BOOTSTRAP_ID" ]; then
	echo "up.sh: no peer_id in $DMS_HOMES/node0.json; remove $DMS_HOMES/node0 and run again" >&2
	exit 1
fi
export DMS_BOOTSTRAP_ID

# A node0 killed earlier left its api.json behind; only a running one is current.
if ! docker-compose ps --services --filter status=running 2>/dev/null | grep -qx node0; then
	rm -f "$DMS_HOMES/node0/api.json"
fi
docker-compose up -d

tries=0
while [ ! -f "$DMS_HOMES/node0/api.json" ]; do
	tries=$((tries + 1))
	if [ "$tries" -gt 30 ]; then
		echo "up.sh: node0 wrote no api.json within 30s; see docker-compose logs node0" >&2
		exit 1
	fi
	sleep 1
done
token="$(sed -n 's/^  "token": "\([^"]*\)"$/\1/p' "$DMS_HOMES/node0/api.json")"
mkdir -p "$DMS_HOMES/client"
(
	umask 077
	printf '{"addr": "127.0.0.1:%s", "token": "%s"}\n' "${DMS_API_PORT:-7777}" "$token" >"$DMS_HOMES/client/api.json"
)
echo "node0 ($DMS_BOOTSTRAP_ID) API on 127.0.0.1:${DMS_API_PORT:-7777}; client home $DMS_HOMES/client"
