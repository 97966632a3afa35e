#!/usr/bin/env bash
# Failover as the client feels it, side by side in one run, both measured by
# the same command (`amqctl verify failover`) with the same client, load and
# kill schedule:
#
#   ours:     the bundled broker, a 3-node replicated group elected by a
#             3-node ZooKeeper ensemble (the pseudo-cluster's shape), with
#             amqctl's defaults;
#   activemq: Debian's ActiveMQ 5.17, a shared-file master/slave pair with its
#             default lock polling (lockAcquireSleepInterval = 10 s), run by
#             bench/activemq-group.sh in the same service layout.
#
# Each: KILLS (default 20) times kill -9 of the master under a receipted
# persistent producer (200 msg/s) and a consumer, each kill after SETTLE s
# (default 5) plus a random 0..JITTER s (default 10, spreading the kills over
# ActiveMQ's lock-polling cycle), the killed broker restarted as slave.
# Prints client pause (kill → first receipt on the new master) and election
# time, median and max, lost and duplicated messages, and the ratio of the
# medians. Target: ours ≤ 0.5 × ActiveMQ's median pause, 0 lost over 20 kills.
#
#   bench/failover.sh            # both
#   ONLY=ours bench/failover.sh  # or ONLY=activemq
#
# Loopback only; every process is stopped by PID at the end (also on error).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KILLS=${KILLS:-20}
SETTLE=${SETTLE:-5}
JITTER=${JITTER:-10}
ONLY=${ONLY:-}
WORK=$(mktemp -d /tmp/amqctl-bench-failover.XXXXXX)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${PROFILE:-release} # or debug: failover times are timers, not CPU
BIN=$CARGO_TARGET_DIR/$PROFILE

echo "building ($PROFILE)..." >&2
(cd "$ROOT" && cargo build $([ "$PROFILE" = release ] && echo --release) -q -p amqctl -p amq-broker)
AMQCTL=$BIN/amqctl

cleanup() {
  [ -f "$WORK/ours.toml" ] && "$AMQCTL" destroy "$WORK/ours.toml" --purge-data --plain --log-dir "$WORK/logs" >/dev/null 2>&1 || true
  [ -f "$WORK/amq.toml" ] && AMQCTL=$AMQCTL "$ROOT/bench/activemq-group.sh" stop "$WORK/amq.toml" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Free loopback ports, one per line.
ports() {
  python3 -c '
import socket, sys
ss = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ss.append(s)
print("\n".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

write_ours() {
  local p; mapfile -t p < <(ports 21)
  cat > "$WORK/ours.toml" <<EOF
[cluster]
name = "bench-ours"
base_dir = "$WORK/ours"
allow_inline_secrets = true

[[hosts]]
name = "local"
address = "127.0.0.1"

[zookeeper]
install = "apt"
heap = "128m"
$(for i in 0 1 2; do printf '\n[[zookeeper.nodes]]\nid = %d\nhost = "local"\nclient_port = %s\npeer_port = %s\nelection_port = %s\n' $((i+1)) "${p[$((3*i))]}" "${p[$((3*i+1))]}" "${p[$((3*i+2))]}"; done)

[[groups]]
name = "ha"
store = "replicated"
security_token = { value = "bench-token" }
$(for i in 0 1 2; do printf '\n[[groups.brokers]]\nname = "amq%d"\nhost = "local"\nstomp_port = %s\nopenwire_port = %s\nstatus_port = %s\nreplication_port = %s\n' $((i+1)) "${p[$((9+4*i))]}" "${p[$((10+4*i))]}" "${p[$((11+4*i))]}" "${p[$((12+4*i))]}"; done)
EOF
}

write_amq() {
  local p; mapfile -t p < <(ports 6)
  cat > "$WORK/amq.toml" <<EOF
[cluster]
name = "bench-amq"
base_dir = "$WORK/amq"

[[hosts]]
name = "local"
address = "127.0.0.1"

[[groups]]
name = "pair"
store = "shared-file"
# lock_acquire_sleep_interval left at ActiveMQ's default (10000 ms)
$(for i in 0 1; do printf '\n[[groups.brokers]]\nname = "amq-%s"\nhost = "local"\nstomp_port = %s\nopenwire_port = %s\nstatus_port = %s\n' "$([ $i = 0 ] && echo a || echo b)" "${p[$((3*i))]}" "${p[$((3*i+1))]}" "${p[$((3*i+2))]}"; done)
EOF
}

verify() { # inventory out.json [extra args]
  local inv=$1 out=$2; shift 2
  "$AMQCTL" verify failover "$inv" --kills "$KILLS" --settle "$SETTLE" --jitter "$JITTER" \
    --format json --plain --log-dir "$WORK/logs" "$@" > "$out" 2> "$out.log" || true
  grep -E '^kill ' "$out.log" | grep -v 'kill -9' >&2 || true
}

if [ "$ONLY" != activemq ]; then
  write_ours
  echo "== ours: deploying a replicated group of 3 + ZooKeeper ensemble of 3" >&2
  "$AMQCTL" deploy "$WORK/ours.toml" --broker-bin "$BIN/amq-broker" --plain --log-dir "$WORK/logs" > "$WORK/deploy.out" 2>&1 \
    || { tail -20 "$WORK/deploy.out" >&2; echo "deploy failed" >&2; exit 1; }
  echo "== ours: $KILLS kills" >&2
  verify "$WORK/ours.toml" "$WORK/ours.json"
  "$AMQCTL" destroy "$WORK/ours.toml" --purge-data --plain --log-dir "$WORK/logs" >/dev/null 2>&1 || true
fi
if [ "$ONLY" != ours ]; then
  write_amq
  echo "== activemq 5.17 shared-file, default lock polling: $KILLS kills" >&2
  AMQCTL=$AMQCTL "$ROOT/bench/activemq-group.sh" install "$WORK/amq.toml"
  AMQCTL=$AMQCTL "$ROOT/bench/activemq-group.sh" start "$WORK/amq.toml" >&2
  # ActiveMQ's takeover is bounded by its 10 s lock polling plus recovery.
  verify "$WORK/amq.toml" "$WORK/amq.json" --bound 60
  AMQCTL=$AMQCTL "$ROOT/bench/activemq-group.sh" stop "$WORK/amq.toml" >/dev/null
fi

python3 - "$WORK" "$KILLS" <<'EOF'
import json, os, sys
work, kills = sys.argv[1], sys.argv[2]
rows = {}
for name, label in (("ours", "ours (replicated, ZooKeeper)"), ("amq", "ActiveMQ 5.17 (shared-file, 10 s polling)")):
    path = os.path.join(work, name + ".json")
    if not os.path.exists(path):
        continue
    try:
        d = json.load(open(path))
    except ValueError:
        print(f"{label}: no result (see {path}.log)")
        continue
    rows[name] = d
    failed = [c["name"] + ": " + c["evidence"] for s in d["checks"]["sections"] for c in s["checks"] if not c["ok"]]
    f = lambda v: "-" if v is None else f"{v:.0f} ms"
    print(f"{label}")
    print(f"  kills {len(d['rows'])}/{kills}  client pause median {f(d['pause_median_ms'])} max {f(d['pause_max_ms'])}"
          f"  election median {f(d['election_median_ms'])} max {f(d['election_max_ms'])}")
    print(f"  messages {d['receipted']} receipted, lost {d['lost']}, duplicated {d['duplicates']}, out of order {d['out_of_order']}")
    for x in failed:
        print(f"  ✗ {x}")
if "ours" in rows and "amq" in rows and rows["amq"]["pause_median_ms"] and rows["ours"]["pause_median_ms"]:
    r = rows["ours"]["pause_median_ms"] / rows["amq"]["pause_median_ms"]
    ok = r <= 0.5 and rows["ours"]["lost"] == 0 and len(rows["ours"]["rows"]) == int(kills)
    print(f"ratio of median client pause ours/ActiveMQ: {r:.3f} (target ≤ 0.5, 0 lost): {'met' if ok else 'NOT met'}")
print(f"raw results: {work}/ours.json {work}/amq.json")
EOF
