#!/bin/sh
# Builds a static dms binary into deploy/ and the image dms:dev FROM scratch
# (DMS_IMAGE names another tag). Run from anywhere; needs Go and Docker.
set -eu
cd "$(dirname "$0")"
image="${DMS_IMAGE:-dms:dev}"
(cd .. && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o deploy/dms ./cmd/dms)
docker build -q -t "$image" . >/dev/null
echo "built $image"
