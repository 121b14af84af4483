#!/usr/bin/env bash
# What `make test` can check of the deployment without a Cloudflare account or Docker Hub:
# the worker bundles for `wrangler deploy` (dry run) and would ship ENVIRONMENT=production, the
# container's build inputs and its cargo build (the one `make build` runs too), and the systemd unit,
# including that both keep the session stores readable only by the service user.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

say "wrangler deploy --dry-run"
node_modules/.bin/wrangler deploy --dry-run --outdir "$out/worker" >"$out/dry-run.log" 2>&1 || { cat "$out/dry-run.log"; exit 1; }
ls "$out/worker"/*.wasm >/dev/null
# What is deployed is production: the bindings wrangler would upload say so.
grep -Eq 'ENVIRONMENT[^a-z]+production' "$out/dry-run.log" || {
  echo "wrangler deploy would not ship ENVIRONMENT=production:" >&2
  grep -i environment "$out/dry-run.log" >&2
  exit 1
}

say "deploy/Dockerfile: build inputs and build command"
grep -E '^COPY [^-]' deploy/Dockerfile | while read -r _ sources; do
  for source in ${sources% *}; do
    [ -e "$source" ] || { echo "Dockerfile copies $source, which does not exist" >&2; exit 1; }
  done
done
build=$(grep -E '^RUN cargo build' deploy/Dockerfile | sed 's/^RUN //')
[ -n "$build" ] || { echo "Dockerfile has no cargo build step" >&2; exit 1; }
$build

say "session stores readable only by the service user"
unit=deploy/wagate-bridge.service
for line in 'UMask=0077' 'StateDirectoryMode=0700' 'User=wagate' 'NoNewPrivileges=true'; do
  grep -qx "$line" "$unit" || { echo "$unit lacks $line" >&2; exit 1; }
done
user=$(grep -E '^USER ' deploy/Dockerfile | tail -1 | cut -d' ' -f2)
case "$user" in ''|root|0) echo "deploy/Dockerfile runs as root" >&2; exit 1;; esac
grep -q 'chmod 0700 /data' deploy/Dockerfile || { echo "deploy/Dockerfile leaves /data readable by others" >&2; exit 1; }

if command -v systemd-analyze >/dev/null; then
  say "deploy/wagate-bridge.service"
  sed "s|/usr/local/bin/wagate-bridge|$PWD/target/release/wagate-bridge|" deploy/wagate-bridge.service >"$out/wagate-bridge.service"
  systemd-analyze verify "$out/wagate-bridge.service"
fi
say "deployment checks passed"
