#!/usr/bin/env bash
# How long `amqctl plan` takes: validate + render + print, per shipped
# inventory and for a generated large inventory (HOSTS hosts, each with one
# ZooKeeper-free replicated-size group of 3 brokers plus networks), median of
# RUNS runs each, and the per-broker cost of the large one.
#
#   bench/plan.sh [RUNS] [HOSTS]        # defaults: 20 runs, 100 hosts
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
HOSTS=${2:-100}
cargo build --release -q --bin amqctl
BIN="${CARGO_TARGET_DIR:-target}/release/amqctl"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export AMQCTL_ZK_PASSWORD=bench-zk AMQCTL_SECURITY_TOKEN=bench-token AMQCTL_ADMIN_PASSWORD=bench-admin

# A large inventory: HOSTS hosts (plan only: 10.20.x.y example addresses),
# a 5-node ZooKeeper ensemble, HOSTS/3 replicated groups of 3 brokers spread
# over 3 hosts each, and a static network chaining the groups.
python3 - "$HOSTS" > "$WORK/large.toml" <<'PY'
import sys
n = int(sys.argv[1])
print('[cluster]\nname = "large"\n')
for i in range(n):
    print(f'[[hosts]]\nname = "h{i}"\naddress = "10.20.{i // 250}.{i % 250 + 1}"\nhostname = "h{i}.example"\n')
print('[zookeeper]\npassword = { env = "AMQCTL_ZK_PASSWORD" }\n')
for i in range(5):
    print(f'[[zookeeper.nodes]]\nid = {i + 1}\nhost = "h{i}"\n')
groups = n // 3
for g in range(groups):
    print(f'[[groups]]\nname = "g{g}"\nstore = "replicated"\nsecurity_token = {{ env = "AMQCTL_SECURITY_TOKEN" }}\n')
    for k in range(3):
        print(f'[[groups.brokers]]\nname = "b{g}-{k}"\nhost = "h{3 * g + k}"\n')
for g in range(groups - 1):
    print(f'[[networks]]\nfrom = "g{g}"\nto = ["g{g + 1}"]\nduplex = true\n')
PY

median_ms() { # command... -> median wall time in ms over RUNS runs
  python3 - "$RUNS" "$@" <<'PY'
import subprocess, sys, time, statistics
runs, cmd = int(sys.argv[1]), sys.argv[2:]
t = []
for _ in range(runs):
    s = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    t.append((time.perf_counter() - s) * 1000)
print(f"{statistics.median(t):.1f} {min(t):.1f} {max(t):.1f}")
PY
}

printf '%-34s %10s %10s %10s %8s\n' inventory "median ms" "min ms" "max ms" files
for inv in inventories/*.toml "$WORK/large.toml"; do
  read -r med lo hi < <(median_ms "$BIN" plan "$inv")
  files=$("$BIN" plan "$inv" --format json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(h["files"]) + sum(len(s["files"]) for s in h["services"]) for h in d["hosts"]) + len(d["client_files"]))')
  printf '%-34s %10s %10s %10s %8s\n' "$(basename "$inv")" "$med" "$lo" "$hi" "$files"
done
brokers=$(( HOSTS / 3 * 3 ))
# --out into a fresh directory every run (every file written) ...
read -r med _ _ < <(median_ms sh -c "exec \"\$0\" plan \"\$1\" --out \"\$(mktemp -d -p \"\$2\")\"" "$BIN" "$WORK/large.toml" "$WORK")
echo "large.toml --out, fresh directory: median ${med} ms for ${brokers} brokers + 5 ZooKeeper nodes ($(python3 -c "print(round($med/$brokers, 3))") ms per broker)"
# ... and into the same one again (nothing changed: nothing rewritten)
"$BIN" plan "$WORK/large.toml" --out "$WORK/same" > /dev/null
read -r med _ _ < <(median_ms "$BIN" plan "$WORK/large.toml" --out "$WORK/same")
echo "large.toml --out, unchanged re-plan: median ${med} ms"
