#!/usr/bin/env bash
# amq-broker vs Debian's ActiveMQ 5.17 under the same STOMP load, one after
# the other in one run: persistent and non-persistent, 1 KiB bodies, 1+1 and
# 8+8 clients (amqctl bench, every SEND receipted), start-up time and idle RSS,
# a stomp.py cross-check, and the load tool against its own sink. Prints both
# figures and their ratio (medians). Loopback only; every process is stopped
# by PID. About 3 minutes.
#
#   bench/broker.sh                 # defaults below
#   COUNT=50000 REPS=5 bench/broker.sh
#   IN_FLIGHT=1 bench/broker.sh     # only synchronous sends (default 1,16: both windows)
#   OUT=/tmp/bench.json bench/broker.sh
set -euo pipefail
cd "$(dirname "$0")/.."

[ -e /usr/share/activemq/bin/activemq.jar ] || { echo "Debian's activemq is not installed (apt-get install activemq)" >&2; exit 2; }
/usr/bin/python3 -c 'import stomp' 2>/dev/null || { echo "python3-stomp is not installed (apt-get install python3-stomp)" >&2; exit 2; }

cargo build --release -q -p amq-broker --bin amq-broker -p amqctl --bin amqctl
target=$(cargo metadata --format-version 1 --no-deps | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

exec /usr/bin/python3 bench/broker_bench.py \
  --amqctl "$target/release/amqctl" --bin-dir "$target/release" \
  --count "${COUNT:-20000}" --reps "${REPS:-3}" --starts "${STARTS:-3}" \
  --size "${SIZE:-1024}" --in-flight "${IN_FLIGHT:-1,16}" --max-time "${MAX_TIME:-60}" \
  --stomp-py-count "${STOMP_PY_COUNT:-5000}" ${OUT:+--out "$OUT"}
