#!/usr/bin/env bash
# Networks of brokers: a producer on broker 1 and a consumer on broker 2 over
# a static network bridge, as a ratio of one broker's throughput (target
# >= 0.5), for amq-broker and Debian's ActiveMQ 5.17 side by side in one run.
# Persistent and non-persistent, 1 KiB bodies. Loopback only; every broker
# is stopped by PID. About 2-4 minutes.
#
#   bench/network.sh
#   COUNT=50000 REPS=5 bench/network.sh
#   BROKERS=amq-broker bench/network.sh     # without ActiveMQ
#   OUT=/tmp/network.json bench/network.sh
set -euo pipefail
cd "$(dirname "$0")/.."

brokers=${BROKERS:-amq-broker,activemq}
if [[ $brokers == *activemq* ]] && [ ! -e /usr/share/activemq/bin/activemq.jar ]; then
  echo "Debian's activemq is not installed (apt-get install activemq), or run with BROKERS=amq-broker" >&2
  exit 2
fi

cargo build --release -q -p amq-broker --bin amq-broker --example network_load
target=$(cargo metadata --format-version 1 --no-deps | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

exec /usr/bin/python3 bench/network_bench.py \
  --bin-dir "$target/release" --load "$target/release/examples/network_load" \
  --count "${COUNT:-20000}" --reps "${REPS:-3}" --size "${SIZE:-1024}" \
  --in-flight "${IN_FLIGHT:-64}" --max-time "${MAX_TIME:-60}" --brokers "$brokers" ${OUT:+--out "$OUT"}
