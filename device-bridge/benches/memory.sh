#!/usr/bin/env bash
# Resident memory (VmRSS) of one release bridge holding N simulated linked
# devices (default 1000): builds the bridge and examples/link_many.rs, which
# starts the bridge on a free port with a temporary data directory, links and
# scans the devices through the signed API and /sim, and prints the figure.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p wagate-bridge --bin wagate-bridge --example link_many
target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/examples/link_many" "$target_dir/release/wagate-bridge" "${1:-1000}"
