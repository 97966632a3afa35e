#!/usr/bin/python3
"""Networks of brokers: throughput of messages produced on broker 1 and
consumed on broker 2 over a static network bridge, as a ratio of one
broker's throughput (producer and consumer on the same broker), for
amq-broker and for Debian's ActiveMQ 5.17, side by side in one run.

Load: `network_load` (broker/examples/network_load.rs), one producer and one
consumer, --size byte bodies, every SEND receipted with --in-flight
outstanding, one ACK per message; persistent and non-persistent; median of
--reps runs of --count messages, each bounded by --max-time. A fresh queue
per run. amq-broker pairs bridge with static:(stomp://...), ActiveMQ pairs
with static:(tcp://...) (OpenWire), both with their default attributes.

Loopback only; every broker is started here and stopped by PID (SIGTERM,
then SIGKILL after 20 s), also on errors and Ctrl-C.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import broker_bench  # noqa: E402  (the Broker process wrapper and its ActiveMQ command line)

class Node(broker_bench.Broker):
    """A broker_bench.Broker with its own activemq.xml (name, network
    connector, OpenWire connector)."""

    def __init__(self, kind, root, args, name, network="", openwire_port=None):
        super().__init__(kind, root, args)
        ow = ('  <transportConnector name="openwire" uri="tcp://127.0.0.1:%d"/>\n    ' % openwire_port
              if openwire_port else "")
        # broker_bench's single-broker configuration, renamed, with the
        # network connector and an OpenWire connector added.
        self.xml = (broker_bench.XML.replace('brokerName="bench"', 'brokerName="%s"' % name)
                    .replace("<persistenceAdapter>", network + "\n    <persistenceAdapter>")
                    .replace("</transportConnectors>", ow + "</transportConnectors>"))
        assert 'brokerName="%s"' % name in self.xml, "broker_bench.XML changed shape"

    def start(self):
        saved = broker_bench.XML
        broker_bench.XML = self.xml  # Broker.start renders the module's template
        try:
            return super().start()
        finally:
            broker_bench.XML = saved

    def addr(self):
        return "127.0.0.1:%d" % self.port


def connector(uri):
    return '<networkConnectors><networkConnector name="bench" uri="%s"/></networkConnectors>' % uri


def load(args, produce, consume, persistent, queue):
    cmd = [args.load, "--produce", produce.addr(), "--consume", consume.addr(), "--count", str(args.count),
           "--size", str(args.size), "--in-flight", str(args.in_flight), "--max-time", str(args.max_time),
           "--settle-ms", str(args.settle_ms), "--destination", "/queue/" + queue]
    if persistent:
        cmd.append("--persistent")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.max_time + 60)
    if out.returncode != 0:
        sys.exit("network_load failed: %s" % out.stderr.strip()[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(kind, args, root):
    """One broker and a bridged pair run side by side; each repetition runs
    the single-broker load and then the bridged one, so both see the same
    machine (the other load on it changes by the minute)."""
    rows = {}
    single = Node(kind, root, args, "single")
    ow = broker_bench.free_port() if kind == "activemq" else None
    b2 = Node(kind, root, args, "b2", openwire_port=ow)
    try:
        single.start()
        b2.start()
        target = "tcp://127.0.0.1:%d" % ow if kind == "activemq" else "stomp://" + b2.addr()
        b1 = Node(kind, root, args, "b1", network=connector("static:(%s)" % target))
        b1.start()
        time.sleep(args.bridge_wait)  # ActiveMQ starts its bridge after the connectors
        for persistent in (True, False):
            for where in ("single", "network"):
                rows[(where, persistent)] = []
            for i in range(args.reps):
                rows[("single", persistent)].append(
                    load(args, single, single, persistent, "single.%s.%d" % (persistent, i)))
                rows[("network", persistent)].append(
                    load(args, b1, b2, persistent, "net.%s.%d" % (persistent, i)))
            for where in ("single", "network"):
                print("  %s %-8s %-14s %s msg/s" % (kind, where, mode(persistent),
                                                    [round(r["throughput"]) for r in rows[(where, persistent)]]),
                      flush=True)
    finally:
        for b in list(broker_bench.RUNNING):
            b.stop()
    return rows


def mode(persistent):
    return "persistent" if persistent else "non-persistent"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True, help="directory with the release amq-broker")
    ap.add_argument("--load", required=True, help="the network_load example binary")
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--max-time", type=int, default=60)
    ap.add_argument("--settle-ms", type=int, default=1000, help="consumer subscribed → producer starts")
    ap.add_argument("--bridge-wait", type=float, default=3.0, help="seconds after starting broker 1")
    ap.add_argument("--heap", default="512M")
    ap.add_argument("--brokers", default="amq-broker,activemq")
    ap.add_argument("--out")
    args = ap.parse_args()
    args.amqctl = None  # broker_bench.Broker's sink command; not used here
    if not 0 < args.count <= 1_000_000:
        sys.exit("--count must be in 1..1000000")

    root = tempfile.mkdtemp(prefix="amqctl-netbench.")
    results = {}
    load0 = os.getloadavg()[0]
    try:
        for kind in args.brokers.split(","):
            print("measuring %s ..." % kind, flush=True)
            results[kind] = measure(kind, args, root)
    finally:
        for b in list(broker_bench.RUNNING):
            b.stop()
        shutil.rmtree(root, ignore_errors=True)

    kinds = list(results)
    title = {"amq-broker": "amq-broker", "activemq": "ActiveMQ 5.17"}
    print()
    print("1 producer on broker 1 → 1 consumer on broker 2 over a static bridge, vs both on one broker")
    print("(each run on one broker is followed by one over the bridge, both brokers' setups running throughout);")
    print("%d B bodies, %d msgs per run, median of %d, %d receipted SENDs in flight, one ACK per message"
          % (args.size, args.count, args.reps, args.in_flight))
    print("load average before/after: %.2f / %.2f (2 cores)" % (load0, os.getloadavg()[0]))
    print()
    print("%-34s" % "" + "".join("%16s" % title[k] for k in kinds))
    summary = {}
    for persistent in (True, False):
        med = {k: {w: statistics.median(r["throughput"] for r in results[k][(w, persistent)])
                   for w in ("single", "network")} for k in kinds}
        print("%-34s" % ("%s, one broker msg/s" % mode(persistent)) + "".join("%16.0f" % med[k]["single"] for k in kinds))
        print("%-34s" % ("%s, over the bridge msg/s" % mode(persistent))
              + "".join("%16.0f" % med[k]["network"] for k in kinds))
        ratios = {k: statistics.median(n["throughput"] / s["throughput"] for s, n in
                                       zip(results[k][("single", persistent)], results[k][("network", persistent)]))
                  for k in kinds}
        print("%-34s" % "  ratio bridge / one broker" + "".join("%16.2f" % ratios[k] for k in kinds))
        print("%-34s" % "  (median of the per-run ratios)")
        incomplete = {k: sum(not r["complete"] for w in ("single", "network") for r in results[k][(w, persistent)])
                      for k in kinds}
        if any(incomplete.values()):
            print("%-34s" % "  runs not complete (loss/timeout)" + "".join("%16d" % incomplete[k] for k in kinds))
        for k in kinds:
            med[k]["ratio"] = ratios[k]
        summary[mode(persistent)] = med
    if len(kinds) == 2:
        for persistent in (True, False):
            m = summary[mode(persistent)]
            print("amq-broker / ActiveMQ over the bridge, %s: %.2fx" % (
                mode(persistent), m["amq-broker"]["network"] / m["activemq"]["network"]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "params": vars(args),
                       "runs": {k: {"%s %s" % (w, mode(p)): v for (w, p), v in results[k].items()} for k in kinds}},
                      f, indent=2)
        print("\nall figures: %s" % args.out)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        for b in list(broker_bench.RUNNING):
            b.stop()
        sys.exit(130)
