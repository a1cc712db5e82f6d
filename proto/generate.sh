#!/usr/bin/env bash
# Regenerates the committed protobuf-c code from proto/*.proto. CI runs this and fails if
# the committed files differ from what protoc-c produces.
set -euo pipefail
cd "$(dirname "$0")/.."
out=Sources/CSwitchboardProto
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
protoc-c --proto_path=proto --c_out="$tmp" proto/switchboard.proto
mv "$tmp/switchboard.pb-c.c" "$out/switchboard.pb-c.c"
mv "$tmp/switchboard.pb-c.h" "$out/include/switchboard.pb-c.h"
