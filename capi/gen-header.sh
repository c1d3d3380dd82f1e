#!/usr/bin/env bash
# Regenerates include/dropnorm.h from capi/src with cbindgen (`cargo install cbindgen
# --locked`). The typed exports come from a macro, so cbindgen reads the expanded crate,
# which needs `-Zunpretty=expanded`: RUSTC_BOOTSTRAP=1 unlocks it on the stable compiler.
#   capi/gen-header.sh            write include/dropnorm.h
#   capi/gen-header.sh --check    fail if the committed header is stale
set -euo pipefail
cd "$(dirname "$0")/.."
out=include/dropnorm.h
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/cbindgen \
  cbindgen --quiet --config capi/cbindgen.toml --crate dropnorm-capi --output "$tmp" capi
if [ "${1:-}" = --check ]; then
  if ! diff -u "$out" "$tmp"; then
    echo "include/dropnorm.h is stale: run capi/gen-header.sh and commit it"; exit 1
  fi
else
  cp "$tmp" "$out"
fi
