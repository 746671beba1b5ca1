#!/usr/bin/env bash
# Console proxy benchmark (issue 3): pvce's relay vs websockify vs direct TCP,
# side by side in one run against the same synthetic VNC-like server, on
# loopback: bulk framebuffer throughput (MB/s), keystroke round trip
# p50/p99, and CPU per GB relayed. Release build.
#
#   scripts/bench-console.sh          # the side-by-side benchmark
#   scripts/bench-console.sh load     # the 200-session load test (~45 s)
#   scripts/bench-console.sh all      # both
#
# Knobs are environment variables, see benches/console_proxy.rs and
# benches/console_load.rs (PVCE_BENCH_SECS, PVCE_BENCH_ROUNDS, PVCE_LOAD_SESSIONS…).
# websockify comes from PyPI into a venv under target/ (created on first run).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-proxy}
case "$what" in
proxy | load | all) ;;
*)
    echo "usage: $0 [proxy|load|all]" >&2
    exit 2
    ;;
esac

if [[ "$what" != load ]]; then
    venv=target/bench-venv
    if [[ ! -x "$venv/bin/websockify" ]]; then
        echo "== installing websockify into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'websockify==0.13.0'
    fi
    export PVCE_WEBSOCKIFY="$PWD/$venv/bin/websockify"
    echo "== websockify $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("websockify"))'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    cargo bench --locked --bench console_proxy
fi
if [[ "$what" != proxy ]]; then
    cargo bench --locked --bench console_load
fi
