#!/usr/bin/python3
"""The same STOMP load against amq-broker and Debian's ActiveMQ 5.17, one
after the other in one run; prints both figures and their ratio.

Both brokers run the same activemq.xml (kahaDB store, one STOMP connector on
a free 127.0.0.1 port). For each broker:
  * start-up time (fork/exec -> STOMP CONNECTED, polled every 2 ms) and idle
    RSS 1 s later, over --starts fresh starts;
  * the load matrix with `amqctl bench` (Rust): persistent and non-persistent,
    1+1 and 8+8 clients, --size byte bodies, every SEND receipted, median of
    --reps runs of --count messages (each run bounded by --max-time), once
    per --in-flight window: 1 is a synchronous producer (a JMS producer of
    persistent messages waits for each send), 16 a pipelining one (receipted
    sends in flight, as an async JMS producer with a send window);
  * an independent check with stomp.py (bench/stomp_check.py), 1+1.
The same matrix also runs against `amqctl bench --serve-sink` in its own
process (a STOMP endpoint that receipts and forwards at once, a broker that
costs next to nothing): the load tool's own ceiling on this machine. The
load runs are interleaved across the servers (all up at once), so that drift
in the machine's load does not favour one of them.

Loopback only; every process is started here and stopped by PID (SIGTERM,
then SIGKILL after 20 s), also on errors and Ctrl-C.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ACTIVEMQ_JAR = "/usr/share/activemq/bin/activemq.jar"
HERE = os.path.dirname(os.path.abspath(__file__))

XML = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="bench" useJmx="false"
          dataDirectory="${{activemq.data}}" schedulerSupport="false">
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}?maximumConnections=1000"/>
    </transportConnectors>
  </broker>
</beans>
"""

LOG4J = """log4j.rootLogger=WARN, logfile
log4j.appender.logfile=org.apache.log4j.FileAppender
log4j.appender.logfile.File={data}/activemq.log
log4j.appender.logfile.layout=org.apache.log4j.PatternLayout
log4j.appender.logfile.layout.ConversionPattern=%d | %-5p | %m | %c%n
"""

RUNNING = []  # brokers to stop on the way out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stomp_ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
            s.settimeout(2)
            return s.recv(16).startswith(b"CONNECTED")
    except OSError:
        return False


class Broker:
    def __init__(self, kind, root, args):
        self.kind, self.root, self.bin_dir, self.heap = kind, root, args.bin_dir, args.heap
        self.amqctl = args.amqctl
        self.proc = None

    def command(self, d):
        conf, data = os.path.join(d, "conf"), os.path.join(d, "data")
        if self.kind == "sink":
            return [self.amqctl, "bench", "--serve-sink", "127.0.0.1:%d" % self.port]
        if self.kind == "amq-broker":
            return [os.path.join(self.bin_dir, "amq-broker"), "--config", os.path.join(conf, "activemq.xml"),
                    "-Dactivemq.data=" + data]
        return ["java", "-Xms" + self.heap, "-Xmx" + self.heap, "-Dorg.apache.activemq.UseDedicatedTaskRunner=true",
                "--add-opens", "java.base/java.lang=ALL-UNNAMED", "--add-opens", "java.base/java.util=ALL-UNNAMED",
                "--add-opens", "java.base/java.net=ALL-UNNAMED",
                "-Djava.io.tmpdir=" + os.path.join(d, "tmp"), "-Dactivemq.classpath=" + conf,
                "-Dactivemq.home=/usr/share/activemq", "-Dactivemq.base=" + d, "-Dactivemq.conf=" + conf,
                "-Dactivemq.data=" + data, "-Dlog4j.configuration=file:" + os.path.join(conf, "log4j.properties"),
                "-jar", ACTIVEMQ_JAR, "start", "xbean:file:" + os.path.join(conf, "activemq.xml")]

    def start(self):
        """Fresh directory and port; returns ms from exec to STOMP CONNECTED."""
        d = tempfile.mkdtemp(prefix=self.kind + ".", dir=self.root)
        for sub in ("conf", "data", "tmp"):
            os.makedirs(os.path.join(d, sub))
        self.port = free_port()
        data = os.path.join(d, "data")
        with open(os.path.join(d, "conf", "activemq.xml"), "w") as f:
            f.write(XML.format(data=data, port=self.port))
        with open(os.path.join(d, "conf", "log4j.properties"), "w") as f:
            f.write(LOG4J.format(data=data))
        log = open(os.path.join(d, "broker.out"), "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.command(d), cwd=d, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        RUNNING.append(self)
        self.dir = d
        while not stomp_ready(self.port):
            if self.proc.poll() is not None:
                sys.exit("%s exited during start-up; see %s/broker.out" % (self.kind, d))
            if time.monotonic() - t0 > 90:
                sys.exit("%s not ready after 90 s; see %s" % (self.kind, d))
            time.sleep(0.002)
        return (time.monotonic() - t0) * 1000

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        RUNNING.remove(self)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self):
        return "stomp://127.0.0.1:%d" % self.port


def amqctl_bench(amqctl, target, persistent, producers, consumers, in_flight, args):
    cmd = [amqctl, "bench", target]
    cmd += ["-n", str(args.count), "-p", str(producers), "-c", str(consumers), "--size", str(args.size),
            "--in-flight", str(in_flight), "--max-time", str(args.max_time), "--json"]
    if persistent:
        cmd.append("--persistent")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.max_time * 3 + 60)
    if out.returncode != 0:
        sys.exit("amqctl bench failed (%s): %s" % (" ".join(cmd), out.stderr.strip()[-2000:]))
    return json.loads(out.stdout)


def stomp_py(port, persistent, args):
    cmd = ["/usr/bin/python3", os.path.join(HERE, "stomp_check.py"), "--port", str(port), "-n",
           str(args.stomp_py_count), "--size", str(args.size), "--persistent", "true" if persistent else "false"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not line:
        return {"error": out.stderr.strip()[-500:]}
    return json.loads(line[0][len("RESULT "):])


def matrix(args):
    """Rows (persistent, producers, consumers, in flight per producer)."""
    return [(pers, n, n, w) for w in args.in_flight for pers in (True, False) for n in (1, 8)]


def row_name(persistent, p, c, in_flight):
    return "%s %d+%d w%d" % ("persistent" if persistent else "non-persistent", p, c, in_flight)


def median_report(reports):
    keys = ("throughput", "produce_rate")
    out = {k: statistics.median(r[k] for r in reports) for k in keys}
    out["p50"] = statistics.median(r["receipt_latency"]["p50_ms"] for r in reports)
    out["p99"] = statistics.median(r["receipt_latency"]["p99_ms"] for r in reports)
    out["lost"] = sum(r["lost"] for r in reports)
    out["dups"] = sum(r["duplicates"] for r in reports)
    out["runs"] = [round(r["throughput"]) for r in reports]
    return out


def startup(kind, args, root):
    """Start-up time and idle RSS over --starts fresh starts."""
    b = Broker(kind, root, args)
    starts, rss = [], []
    for _ in range(args.starts):
        starts.append(b.start())
        time.sleep(1)
        rss.append(b.rss_kb())
        b.stop()
    print("  %s: start-up %s ms, idle RSS %s MiB" % (kind, [round(s, 1) for s in starts],
                                                   [round(r / 1024, 1) for r in rss]), flush=True)
    return {"startup_ms": statistics.median(starts), "startups_ms": starts, "idle_rss_kb": statistics.median(rss)}


def load(kinds, args, root, results):
    """The matrix with every server up at once, runs interleaved (rep by rep,
    row by row, server by server), so that drift in the machine's load hits
    all of them alike; medians per server and row."""
    servers = {k: Broker(k, root, args) for k in kinds}
    for b in servers.values():
        b.start()
    runs = {k: {row_name(*m): [] for m in matrix(args)} for k in kinds}
    for rep in range(args.reps):
        for m in matrix(args):
            got = []
            for k in kinds:
                r = amqctl_bench(args.amqctl, servers[k].url(), *m, args)
                runs[k][row_name(*m)].append(r)
                got.append("%s %.0f" % (k, r["throughput"]))
            print("  run %d/%d %-24s %s msg/s" % (rep + 1, args.reps, row_name(*m), ", ".join(got)), flush=True)
    for k in kinds:
        results.setdefault(k, {})["rows"] = {row: median_report(rs) for row, rs in runs[k].items()}
        if k != "sink":
            results[k]["stomp_py"] = {("persistent" if pers else "non-persistent"): stomp_py(servers[k].port, pers, args)
                                      for pers in (True, False)}
            results[k]["rss_after_load_kb"] = servers[k].rss_kb()
    for b in servers.values():
        b.stop()


def fmt_lat(r):
    return "%.2f / %.2f" % (r["p50"], r["p99"])


def report(results, args):
    """The table: one column per broker (medians), the ratio amq-broker /
    ActiveMQ, and the load tool against the sink."""
    kinds = [k for k in ("amq-broker", "activemq") if k in results]
    title = {"amq-broker": "amq-broker", "activemq": "ActiveMQ 5.17"}
    both = len(kinds) == 2

    def ratio(x, y):
        if not (both and y):
            return ""
        return ("%8.3fx" if x / y < 0.1 else "%8.2fx") % (x / y)

    print()
    print("STOMP, %d B bodies, %d msgs per run, median of %d; every SEND receipted, wN = N sends in flight "
          "per producer (w1: synchronous sends); consumers ACK each message" % (args.size, args.count, args.reps))
    print("load average before/after: %.2f / %.2f (2 cores)" % tuple(results["loadavg"]))
    print()
    print("%-32s" % "" + "".join("%16s" % title[k] for k in kinds) + "%10s %14s" % ("ratio" if both else "",
                                                                                  "sink (tool)"))
    sink = results["sink"]["rows"]
    for name in results[kinds[0]]["rows"]:
        rows = [results[k]["rows"][name] for k in kinds]
        # Runs were interleaved, so run i of each broker saw the same moment:
        # the ratio is the median of the per-run ratios.
        paired = statistics.median(x / max(y, 1e-9) for x, y in zip(rows[0]["runs"], rows[-1]["runs"]))
        print("%-32s" % (name + " msg/s") + "".join("%16.0f" % r["throughput"] for r in rows)
              + "%10s %14.0f" % (ratio(paired, 1.0), sink[name]["throughput"]))
        print("%-32s" % "  receipt latency p50 / p99 ms" + "".join("%16s" % fmt_lat(r) for r in rows)
              + "%10s %14s" % ("", fmt_lat(sink[name])))
        if any(r["lost"] for r in rows):
            print("%-32s" % "  LOST" + "".join("%16d" % r["lost"] for r in rows))
    figures = [("start-up to STOMP CONNECTED ms", lambda r: r["startup_ms"]),
               ("idle RSS MiB", lambda r: r["idle_rss_kb"] / 1024),
               ("RSS after the load MiB", lambda r: r["rss_after_load_kb"] / 1024)]
    for label, get in figures:
        vals = [get(results[k]) for k in kinds]
        print("%-32s" % label + "".join("%16.1f" % v for v in vals) + "%10s" % ratio(vals[0], vals[-1]))
    for pers in ("persistent", "non-persistent"):
        checks = [results[k]["stomp_py"][pers] for k in kinds]
        if any("error" in c for c in checks):
            print("stomp.py %s: %s" % (pers, [c.get("error") for c in checks]))
            continue
        vals = [c["produce_rate"] for c in checks]
        print("%-32s" % ("stomp.py 1+1 %s msg/s" % pers) + "".join("%16.0f" % v for v in vals)
              + "%10s" % ratio(vals[0], vals[-1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--amqctl", required=True)
    ap.add_argument("--bin-dir", required=True, help="directory with the release amq-broker")
    ap.add_argument("--count", type=int, default=20000, help="messages per run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--in-flight", default="1,16",
                    help="receipted sends in flight per producer; comma-separated, one matrix each")
    ap.add_argument("--max-time", type=float, default=60.0, help="bound on each run, seconds")
    ap.add_argument("--stomp-py-count", type=int, default=5000)
    ap.add_argument("--heap", default="512M", help="ActiveMQ -Xms/-Xmx (Debian's default)")
    ap.add_argument("--out", help="write all figures as JSON here")
    ap.add_argument("--brokers", default="amq-broker,activemq", help="which to measure (comma-separated)")
    args = ap.parse_args()
    try:
        args.in_flight = [int(w) for w in args.in_flight.split(",")]
    except ValueError:
        sys.exit("--in-flight takes comma-separated positive numbers, e.g. 1,16")
    if not all(0 < w <= 1024 for w in args.in_flight):
        sys.exit("--in-flight windows must be in 1..1024")
    if not 0 < args.count <= 1_000_000:
        sys.exit("--count must be in 1..1000000")

    load0 = os.getloadavg()[0]
    root = tempfile.mkdtemp(prefix="amqctl-bench.")
    results = {}
    try:
        brokers = args.brokers.split(",")
        print("start-up and idle RSS ...", flush=True)
        for kind in brokers:
            results[kind] = startup(kind, args, root)
        print("load (the sink is amqctl bench --serve-sink: the load tool's ceiling) ...", flush=True)
        load(brokers + ["sink"], args, root, results)
    finally:
        for b in list(RUNNING):
            b.stop()
        shutil.rmtree(root, ignore_errors=True)
    results["params"] = {k: v for k, v in vars(args).items() if k not in ("amqctl", "bin_dir", "out")}
    results["loadavg"] = [load0, os.getloadavg()[0]]

    report(results, args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
        print("\nall figures: %s" % args.out)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        for b in list(RUNNING):
            b.stop()
        sys.exit(130)
