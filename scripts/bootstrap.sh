#!/usr/bin/env bash
# Installs whatever this machine is missing to build, run and test wagate, and
# reuses what is already there: the wasm32 target, worker-build (matching the
# `worker` crate), wasm-bindgen-cli (exactly the version in Cargo.lock), the npm
# tools from package-lock.json, Chromium, PHP with Guzzle, and the Python environment of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

version_of() { # the first x.y.z that command $1 prints for --version, if it runs
  "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1 || true
}

locked_version() { # the version Cargo.lock pins for crate $1
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

for tool in cargo rustup node npm python3; do
  command -v "$tool" >/dev/null || { echo "bootstrap: '$tool' is required but not installed" >&2; exit 1; }
done

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

worker_version=$(locked_version worker)
if [ "$(version_of worker-build)" != "$worker_version" ]; then
  say "installing worker-build $worker_version (takes a few minutes, once)"
  cargo install worker-build --version "$worker_version" --locked
fi

bindgen_version=$(locked_version wasm-bindgen)
if [ "$(version_of wasm-bindgen)" != "$bindgen_version" ]; then
  say "installing wasm-bindgen-cli $bindgen_version (takes a few minutes, once)"
  cargo install wasm-bindgen-cli --version "$bindgen_version" --locked
fi

# Every devDependency installed at exactly its pinned version (a cached node_modules may be older).
npm_tools_current() {
  node -e 'for (const [name, version] of Object.entries(require("./package.json").devDependencies)) {
    let installed; try { installed = require(`./node_modules/${name}/package.json`).version } catch { process.exit(1) }
    if (installed !== version) process.exit(1) }'
}
if ! npm_tools_current || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm tools (wrangler, esbuild, binaryen, redoc, axe-core, express) from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error
fi

sudo_or_not=""; [ "$(id -u)" = 0 ] || sudo_or_not="sudo"
apt_install() { # Debian packages $@, after one refresh of the package lists per run
  if [ -z "${apt_updated:-}" ]; then $sudo_or_not apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo_or_not apt-get install -y -qq "$@" >/dev/null
}

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  say "installing Chromium (Debian package) for the page tests"
  apt_install chromium
fi

# The references' PHP snippets (tests/clients) run on php-cli with Debian's Guzzle, whose
# autoloader is this file.
if ! command -v php >/dev/null || [ ! -f /usr/share/php/GuzzleHttp/autoload.php ]; then
  say "installing PHP and Guzzle (Debian packages) for the references' client code"
  apt_install php-cli php-guzzlehttp-guzzle
fi

if [ ! -x .venv/bin/pytest ] || [ tests/requirements.txt -nt .venv/.installed ]; then
  say "preparing the end-to-end test environment (.venv)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  touch .venv/.installed
fi
