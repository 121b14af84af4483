#!/usr/bin/env bash
# Builds the worker's Wasm bundle into build/ with the toolchain that
# scripts/bootstrap.sh installed, so nothing is downloaded at build time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
# The docs page's OpenAPI viewer ships with the worker's static assets (pages work offline).
mkdir -p public/vendor
cp node_modules/redoc/bundles/redoc.standalone.js public/vendor/redoc.standalone.js
exec worker-build --release
