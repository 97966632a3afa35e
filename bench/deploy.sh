#!/usr/bin/env bash
# Deploy benchmark: `amqctl deploy` against an Ansible playbook doing the same
# job, side by side in one run, against the same three test hosts.
#
#   bench/deploy.sh [RUNS]        # default RUNS=5; needs root
#
# Test hosts: network namespaces b1..b3 (10.96.0.11-13) bridged to a
# controller namespace (10.96.0.1), each with its own sshd (throwaway keys,
# root by key only). Every client — amqctl, ansible, ssh — runs inside the
# controller namespace, whose only routes are lo and 10.96.0.0/24, so nothing
# leaves the machine. Everything is torn down on exit (sshds and brokers by
# PID, namespaces deleted).
#
# The job, per host: the amq-broker release binary, three rendered files
# (activemq.xml, run.sh, the /etc/hosts block), start the broker (or restart
# it when something changed), wait until it serves its status port.
#   (a) from scratch: brokers stopped, base directories and hosts blocks removed
#   (b) no change:    the same deploy again right after
# Each tool runs as a fresh process with no warm SSH connections (Ansible's
# ControlPersist masters are closed before each timed run). Rounds are
# interleaved (amqctl, Ansible default config, Ansible tuned) to spread drift.
# Prints per-run times, medians and the ratios Ansible/amqctl.
#
# Measured 2026-12-01 on the 2-vCPU reference VM, quiet (three parallel
# `ssh true` took 0.24 s), RUNS=5, medians: amqctl 0.78 s from scratch /
# 0.19 s no change; ansible-core 2.19.14 default 7.6 / 7.2 s (9.7x / 37.9x),
# tuned (pipelining, forks 10, no facts, fixed interpreter) 5.9 / 5.1 s
# (7.5x / 27.0x).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-5}
W=${BENCH_WORK:-/tmp/amqctl-bench-deploy}
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${BENCH_VENV:-$W/venv}
CTL=amqb-ctl
HOSTS="b1 b2 b3"
NET=10.96.0
ip_of() { echo "$NET.$(( 10 + ${1#b} ))"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
in_ctl() { ip netns exec $CTL "$@"; }

[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }

echo "== building release binaries"
(cd "$ROOT" && cargo build --release -q -p amqctl -p amq-broker)
AMQCTL=$TGT/release/amqctl
BROKER=$TGT/release/amq-broker

if [ ! -x "$VENV/bin/ansible-playbook" ]; then
  echo "== installing ansible-core into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'ansible-core>=2.19,<2.20'
fi
ANSIBLE_VERSION=$("$VENV/bin/ansible-playbook" --version | sed -n 1p)

# ---------------------------------------------------------------- test hosts
down() {
  set +e
  for h in $HOSTS; do
    for pf in "$W"/run/sshd-$h.pid "$W"/amq/$h/*/run.pid "$W"/ans/$h/broker/run.pid; do
      [ -s "$pf" ] && kill -9 "$(cat "$pf")" 2>/dev/null
    done
  done
  for n in $CTL $HOSTS; do ip netns del amqb-$n 2>/dev/null; rm -rf /etc/netns/amqb-$n; done
  ip netns del $CTL 2>/dev/null; rm -rf /etc/netns/$CTL
}
trap down EXIT
down
rm -rf "$W/keys" "$W/run" "$W/amq" "$W/ans" "$W/cp"
mkdir -p "$W/keys" "$W/run" "$W/cp"; chmod 700 "$W"
ip netns add $CTL
ip -n $CTL link set lo up
ip -n $CTL link add br0 type bridge
ip -n $CTL addr add $NET.1/24 dev br0
ip -n $CTL link set br0 up
mkdir -p /etc/netns/$CTL
ssh-keygen -q -t ed25519 -N '' -C amqb-client -f "$W/keys/client"
cp "$W/keys/client.pub" "$W/keys/authorized_keys"
: > "$W/keys/known_hosts"
echo '# empty: a broker host runs no pyenv init' > "$W/keys/bashrc"
mkdir -p /run/sshd
HOSTS_BASE="127.0.0.1 localhost"
for h in $HOSTS; do
  ns=amqb-$h ip=$(ip_of $h)
  ip netns add $ns
  ip -n $ns link set lo up
  ip -n $CTL link add v$h type veth peer name eth0 netns $ns
  ip -n $CTL link set v$h master br0
  ip -n $CTL link set v$h up
  ip -n $ns addr add $ip/24 dev eth0
  ip -n $ns link set eth0 up
  mkdir -p /etc/netns/$ns
  echo "$HOSTS_BASE" > /etc/netns/$ns/hosts
  ssh-keygen -q -t ed25519 -N '' -C amqb-$h -f "$W/keys/host_$h"
  echo "$ip $(cut -d' ' -f1,2 "$W/keys/host_$h.pub")" >> "$W/keys/known_hosts"
  cat > "$W/run/sshd-$h.conf" <<EOF
ListenAddress $ip
HostKey $W/keys/host_$h
PidFile $W/run/sshd-$h.pid
AuthorizedKeysFile $W/keys/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100
Subsystem sftp internal-sftp
EOF
  ip netns exec $ns sh -c "mount --bind '$W/keys/bashrc' /root/.bashrc; exec /usr/sbin/sshd -f '$W/run/sshd-$h.conf' -E '$W/run/sshd-$h.log'"
done
for h in $HOSTS; do
  for _ in $(seq 50); do in_ctl timeout 1 bash -c "exec 3<>/dev/tcp/$(ip_of $h)/22" 2>/dev/null && break; sleep 0.1; done
done
echo "== test hosts up: $(for h in $HOSTS; do printf '%s=%s ' $h "$(ip_of $h)"; done)"

# ---------------------------------------------------------------- the two tools
INV=$W/inventory.toml
{
  printf '[cluster]\nname = "bench"\nbase_dir = "%s/amq"\n' "$W"
  for h in $HOSTS; do
    cat <<EOF

[[hosts]]
name = "$h"
address = "$(ip_of $h)"
hostname = "$h"
manage_hosts = true
base_dir = "$W/amq/$h"
service_manager = "process"
ssh = { user = "root", identity_file = "$W/keys/client", known_hosts_file = "$W/keys/known_hosts" }
EOF
  done
  for h in $HOSTS; do
    printf '\n[[groups]]\nname = "g%s"\n\n[[groups.brokers]]\nname = "broker-%s"\nhost = "%s"\n' "$h" "$h" "$h"
  done
} > "$INV"

ANS=$ROOT/bench/deploy-ansible
{
  echo "[brokers]"
  for h in $HOSTS; do echo "$h ansible_host=$(ip_of $h)"; done
  echo
  echo "[brokers:vars]"
  echo "ansible_user=root"
  echo "ansible_ssh_private_key_file=$W/keys/client"
  echo "ansible_ssh_common_args=-o UserKnownHostsFile=$W/keys/known_hosts -o StrictHostKeyChecking=yes"
  echo "bench_base=$W/ans"
  echo "broker_bin=$BROKER"
} > "$W/ansible-inventory.ini"
# default: ansible-core's defaults; tuned: what an experienced user sets
# (pipelining, more forks, no fact gathering, no interpreter discovery).
printf '[defaults]\ninventory = %s\nhost_key_checking = True\n[ssh_connection]\ncontrol_path_dir = %s/cp\n' \
  "$W/ansible-inventory.ini" "$W" > "$W/ansible-default.cfg"
printf '[defaults]\ninventory = %s\nforks = 10\ngathering = explicit\ninterpreter_python = /usr/bin/python3\n[ssh_connection]\npipelining = True\ncontrol_path_dir = %s/cp\n' \
  "$W/ansible-inventory.ini" "$W" > "$W/ansible-tuned.cfg"

reset_hosts() {
  local h pf
  for h in $HOSTS; do
    for pf in "$W"/amq/$h/*/run.pid "$W"/ans/$h/broker/run.pid; do
      [ -s "$pf" ] && kill -9 "$(cat "$pf")" 2>/dev/null || true
    done
    echo "$HOSTS_BASE" > /etc/netns/amqb-$h/hosts
  done
  rm -rf "$W/amq" "$W/ans"
  sleep 0.3   # ports free again
}
close_masters() {
  local s
  for s in "$W"/cp/*; do
    [ -S "$s" ] && in_ctl timeout 5 ssh -o ControlPath="$s" -O exit x >/dev/null 2>&1 || true
  done
}
# Each run's wall time in ms goes to RESULTS as "tool scenario ms".
RESULTS=$W/results.txt; : > "$RESULTS"
timed() { # tool scenario cmd...
  local tool=$1 sc=$2 t0 t1 rc; shift 2
  t0=$(now_ms)
  if "$@" > "$W/last-$tool-$sc.log" 2>&1; then rc=0; else rc=$?; fi
  t1=$(now_ms)
  if [ $rc -ne 0 ]; then echo "!! $tool $sc failed (rc $rc), see $W/last-$tool-$sc.log"; tail -20 "$W/last-$tool-$sc.log"; exit 1; fi
  echo "$tool $sc $((t1 - t0))" >> "$RESULTS"
  printf '  %-16s %-10s %6d ms\n' "$tool" "$sc" $((t1 - t0))
}
run_amqctl() { in_ctl "$AMQCTL" deploy "$INV" --plain --broker-bin "$BROKER" --log-dir "$W/logs"; }
run_ansible() { # cfg
  close_masters
  in_ctl env ANSIBLE_CONFIG="$W/ansible-$1.cfg" ANSIBLE_NOCOLOR=1 PATH="$VENV/bin:$PATH" \
    ansible-playbook "$ANS/deploy.yml"
}
check_noop() { grep -q "no changes" "$W/last-amqctl-nochange.log" || { echo "!! amqctl re-deploy was not a no-op"; exit 1; }; }
check_ans_noop() { grep -Eq 'changed=0 ' "$W/last-$1-nochange.log" || { echo "!! $1 re-run changed something"; exit 1; }; }

# Floor: what three SSH logins in parallel cost.
floor() {
  local t0 t1
  t0=$(now_ms)
  for h in $HOSTS; do
    in_ctl ssh -i "$W/keys/client" -o UserKnownHostsFile="$W/keys/known_hosts" -o BatchMode=yes root@"$(ip_of $h)" true &
  done
  wait
  t1=$(now_ms)
  echo "floor ssh3 $((t1 - t0))" >> "$RESULTS"
  printf '  %-16s %-10s %6d ms\n' "ssh true x3" "parallel" $((t1 - t0))
}

echo "== $RUNS interleaved rounds ($ANSIBLE_VERSION; broker binary $(du -h "$BROKER" | cut -f1))"
for r in $(seq "$RUNS"); do
  echo "-- round $r"
  floor
  reset_hosts
  timed amqctl scratch run_amqctl
  timed amqctl nochange run_amqctl; check_noop
  for cfg in default tuned; do
    reset_hosts
    timed ansible-$cfg scratch run_ansible $cfg
    timed ansible-$cfg nochange run_ansible $cfg; check_ans_noop ansible-$cfg
  done
done
reset_hosts

echo
echo "== medians over $RUNS runs (ms), ratio = Ansible / amqctl"
python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for tool, sc, ms in rows:
    med.setdefault((tool, sc), []).append(int(ms))
m = {k: statistics.median(v) for k, v in med.items()}
print(f"  {'':18}{'from scratch':>14}{'no change':>12}")
for tool in ["amqctl", "ansible-default", "ansible-tuned"]:
    print(f"  {tool:18}{m[(tool,'scratch')]:>14.0f}{m[(tool,'nochange')]:>12.0f}")
print(f"  {'ssh true x3':18}{m[('floor','ssh3')]:>14.0f}")
for tool in ["ansible-default", "ansible-tuned"]:
    a = m[(tool, "scratch")] / m[("amqctl", "scratch")]
    b = m[(tool, "nochange")] / m[("amqctl", "nochange")]
    print(f"  ratio {tool:12} from scratch {a:5.1f}x   no change {b:5.1f}x")
EOF
