#!/usr/bin/env bash
# Run before changing the remote-command path (k1prov/ssh.py, k1prov/fanout/) or the pinned
# versions (constraints.txt): k1prov against clush on the same sshd farm in one run, at a
# small N, as ratios. Exits 1 when k1prov's median wall time or client CPU is above the
# given fraction of clush's (defaults: the margins kept on 2026-12-07, see
# benchmarks/README.md "The check"). As root (the farm's sshds listen on port 22 of 127.0.1.x).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python benchmarks/bench_fanout.py --sizes "${K1PROV_CHECK_N:-50}" --repeat 3 \
    --jobs true,script --tools k1prov,clush --fixed '' --rss '' \
    --max-ratios "${K1PROV_CHECK_MAX_RATIOS:-0.8,0.3}" "$@"
