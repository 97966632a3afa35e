#!/usr/bin/env bash
# HA benchmark: replicated-group persistent throughput vs a standalone
# broker (ratio; target >= 0.7 for quorum_mem), and the failover pause a
# failover client sees over repeated kill -9s of the master (target: median
# <= 1 s, max <= 2.5 s). Real ZooKeeper 3.8 ensemble and amq-broker
# processes on 127.0.0.1; every load is bounded in count and time.
#
#   bench/ha.sh                      # defaults below
#   HA_BENCH_KILLS=20 HA_BENCH_MESSAGES=20000 HA_BENCH_REPS=5 HA_BENCH_PRODUCERS=8 bench/ha.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HA_BENCH_KILLS=${HA_BENCH_KILLS:-20}
export HA_BENCH_MESSAGES=${HA_BENCH_MESSAGES:-20000}
export HA_BENCH_REPS=${HA_BENCH_REPS:-5}
export HA_BENCH_PRODUCERS=${HA_BENCH_PRODUCERS:-8}
echo "# amq-broker HA benchmark ($(date -u +%FT%TZ), $(nproc) cores)"
cargo build --release -q -p amq-broker
out=$(cargo test --release -q -p amq-broker --test ha_bench -- --ignored --nocapture --test-threads=1 2>&1) || {
  echo "$out" | tail -50; exit 1; }
echo "$out" | grep -oE '(RESULT|round [0-9]+:).*'
echo
echo "# for comparison (shared/reference/anchors/REPORT.md, same machine):"
echo "#   ActiveMQ 5.17 shared-file M/S, JMS failover client pause: 2.6-10.3 s (defaults), 0.8-1.3 s (1 s lock polling)"
echo "#   ZooKeeper 3.8 leader re-election: ~0.4 s"
