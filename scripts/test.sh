#!/usr/bin/env bash
# The project's test command (README, .ci/run). Installs what the tests use —
# real ZooKeeper, ActiveMQ, OpenSSH server, stomp.py — then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v java >/dev/null || need+=(default-jre-headless)
[ -e /usr/share/zookeeper/bin/zkServer.sh ] || [ -e /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
[ -e /usr/share/activemq/bin/activemq ] || need+=(activemq)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
/usr/bin/python3 -c 'import stomp' 2>/dev/null || need+=(python3-stomp)  # Debian's python3, as the tests use
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

cargo build --workspace --all-targets
cargo test --workspace -- --test-threads=2
