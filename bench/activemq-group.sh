#!/usr/bin/env bash
# Runs the brokers of an amqctl inventory as Debian's ActiveMQ 5.17 instead
# of amq-broker, laid out exactly as `amqctl deploy` lays out its services
# (<base_dir>/<broker>/activemq.xml, run.sh, run.pid, out.log, and
# AMQCTL_SERVICE=<dir> in the environment), so `amqctl verify election` and
# `amqctl verify failover` work on them unchanged: they kill -9 the master
# through the executor and restart it with its run.sh. ActiveMQ has no
# /status endpoint; verify then tells master from slave by whether the STOMP
# connector answers (a shared-file slave keeps its connectors closed).
#
#   activemq-group.sh install INVENTORY   render (amqctl plan --out) and write each broker's files
#   activemq-group.sh start INVENTORY     start every broker in inventory order (the first takes the lock)
#   activemq-group.sh stop INVENTORY      kill every broker by its pid file
#   activemq-group.sh run DIR             (what run.sh execs) ActiveMQ in the foreground on DIR/activemq.xml
#
# Env: AMQCTL (default: amqctl on PATH), HEAP (default 256m). Loopback
# inventories only; every wait is bounded.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
AMQCTL=${AMQCTL:-amqctl}
ACTIVEMQ_HOME=/usr/share/activemq
HEAP=${HEAP:-256m}

# "name dir stomp_port" for each broker of the inventory, in start order.
brokers() {
  "$AMQCTL" plan "$1" --format json | python3 -c '
import json, sys
d = json.load(sys.stdin)
for h in d["hosts"]:
    for s in h["services"]:
        if s["kind"]["kind"] == "broker":
            stomp = dict(s["ports"]).get("stomp")
            print(s["name"], s["dir"], stomp)
'
}

cmd_install() {
  local inv=$1 out
  out=$(mktemp -d)
  "$AMQCTL" plan "$inv" --out "$out" >/dev/null
  while read -r name dir _; do
    mkdir -p "$dir"
    cp "$(find "$out" -path "*/$name/activemq.xml")" "$dir/activemq.xml"
    printf '#!/bin/sh\nexec %q run %q\n' "$HERE/activemq-group.sh" "$dir" > "$dir/run.sh"
    chmod 755 "$dir/run.sh"
  done < <(brokers "$inv")
  rm -rf "$out"
}

stomp_ready() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 || exit 1
    printf 'CONNECT\naccept-version:1.2\nhost:localhost\n\n\0' >&3
    IFS= read -r -t 2 line <&3 && [ \"\$line\" = CONNECTED ]" 2>/dev/null
}

cmd_start() {
  local inv=$1 first=1 i
  while read -r name dir stomp; do
    # As amqctl starts a process service: detached, marked, pid recorded.
    ( cd "$dir" || exit 1; AMQCTL_SERVICE="$dir" setsid ./run.sh >> out.log 2>&1 < /dev/null & echo $! > "$dir/run.pid" )
    if [ $first = 1 ]; then
      # The first broker takes the lock; wait until it serves.
      for i in $(seq 600); do stomp_ready "$stomp" && break; sleep 0.1; done
      stomp_ready "$stomp" || { echo "$name did not start; see $dir/out.log" >&2; return 1; }
      first=0
    fi
    echo "started $name (pid $(cat "$dir/run.pid"))"
  done < <(brokers "$inv")
  sleep 2 # let the slaves reach the locker
}

cmd_stop() {
  local inv=$1
  while read -r name dir _; do
    [ -s "$dir/run.pid" ] && kill -9 "$(cat "$dir/run.pid")" 2>/dev/null && echo "stopped $name"
    rm -f "$dir/run.pid"
  done < <(brokers "$inv")
  true
}

cmd_run() {
  local d=$1
  mkdir -p "$d/conf" "$d/data" "$d/tmp"
  cat > "$d/conf/log4j.properties" <<EOF
log4j.rootLogger=INFO, logfile
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.appender.logfile=org.apache.log4j.FileAppender
log4j.appender.logfile.File=$d/activemq.log
log4j.appender.logfile.layout=org.apache.log4j.PatternLayout
log4j.appender.logfile.layout.ConversionPattern=%d{HH:mm:ss,SSS} | %-5p | %m | %c%n
EOF
  local opens=()
  for m in java.base/java.security java.base/java.net java.base/java.lang java.base/java.util \
           java.naming/javax.naming.spi java.rmi/sun.rmi.transport.tcp \
           java.base/java.util.concurrent java.base/java.util.concurrent.atomic; do
    opens+=(--add-opens "$m=ALL-UNNAMED")
  done
  exec java "-Xms$HEAP" "-Xmx$HEAP" -Dorg.apache.activemq.UseDedicatedTaskRunner=true \
    --add-reads=java.xml=java.logging "${opens[@]}" \
    "-Djava.io.tmpdir=$d/tmp" "-Dactivemq.classpath=$d/conf" "-Dactivemq.home=$ACTIVEMQ_HOME" \
    "-Dactivemq.base=$d" "-Dactivemq.conf=$d/conf" "-Dactivemq.data=$d/data" \
    "-Dlog4j.configuration=file:$d/conf/log4j.properties" \
    -jar "$ACTIVEMQ_HOME/bin/activemq.jar" start "xbean:file:$d/activemq.xml"
}

case "${1:-}" in
  install) cmd_install "$2" ;;
  start) cmd_start "$2" ;;
  stop) cmd_stop "$2" ;;
  run) cmd_run "$2" ;;
  *) echo "usage: $0 install|start|stop INVENTORY | run DIR" >&2; exit 2 ;;
esac
