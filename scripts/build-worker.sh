#!/usr/bin/env bash
# Builds the worker's Wasm bundle into build/ with the toolchain that
# scripts/bootstrap.sh installed, so nothing is downloaded at build time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
# The docs page's OpenAPI viewer ships with the worker's static assets (pages work offline).
# Redoc's menu shows a logo it loads from cdn.redoc.ly (no option turns it off): it becomes an
# empty inline image, so the page loads nothing from other hosts (its CSP, public/_headers, says so).
mkdir -p public/vendor
sed 's|https://cdn.redoc.ly/redoc/logo-mini.svg|data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E|' \
  node_modules/redoc/bundles/redoc.standalone.js >public/vendor/redoc.standalone.js
if grep -q 'cdn\.redoc\.ly' public/vendor/redoc.standalone.js; then
  echo "public/vendor/redoc.standalone.js still loads from cdn.redoc.ly: update scripts/build-worker.sh" >&2
  exit 1
fi
worker-build --release
# worker-build's own wasm-opt step downloads binaryen from GitHub (off in Cargo.toml); the npm
# package's runs here instead. -Oz cuts the code by about a tenth, and the name section goes: it
# is an eighth of the compressed bundle (a `WASM_OPT=off` build keeps it, to read a trap's stack
# locally). The features are the ones rustc and wasm-bindgen emit, named one by one:
# `--all-features` lets binaryen write encodings the Workers runtime cannot load (its compact
# import section: "unknown import kind 0x7f"). `WASM_OPT=off` skips the step while iterating;
# `make build`, and so the tests and every deploy, run it.
if [ "${WASM_OPT:-on}" != off ]; then
  node_modules/.bin/wasm-opt -Oz \
    --enable-bulk-memory --enable-multivalue --enable-mutable-globals --enable-nontrapping-float-to-int \
    --enable-reference-types --enable-sign-ext --enable-exception-handling \
    build/index_bg.wasm -o build/index_bg.wasm
fi
