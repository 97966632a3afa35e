#!/usr/bin/python3
"""Independent check of the Rust load tool with a STOMP client nobody here
wrote (stomp.py, Debian's python3-stomp): one producer process and one
consumer process, N messages of SIZE bytes to a fresh queue. Every SEND asks
for a receipt and waits for it (synchronous, like `amqctl bench
--in-flight 1`); the consumer ACKs each message (client-individual).
TCP_NODELAY on both sockets (stomp.py leaves Nagle on).

Prints one line: RESULT {json} with produce_rate (receipted msg/s),
consume_rate, receipt latency p50/p99 (ms), lost and duplicates.
Loopback only; N and the run time are bounded.
"""
import argparse
import json
import multiprocessing as mp
import os
import socket
import sys
import threading
import time

import stomp


def connect(port, listener):
    conn = stomp.Connection12([("127.0.0.1", port)], heartbeats=(0, 0), auto_content_length=True)
    conn.set_listener("l", listener)
    conn.connect(wait=True)
    sock = getattr(conn.transport, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


class Receipts(stomp.ConnectionListener):
    def __init__(self):
        self.cv = threading.Condition()
        self.got = set()

    def on_receipt(self, frame):
        with self.cv:
            self.got.add(frame.headers.get("receipt-id"))
            self.cv.notify_all()

    def wait(self, rid, deadline):
        with self.cv:
            while rid not in self.got:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(min(left, 0.5))
            self.got.discard(rid)
            return True


def produce(args, queue, go, out):
    lst = Receipts()
    conn = connect(args.port, lst)
    body = "x" * args.size
    go.wait(args.timeout)
    deadline = time.monotonic() + args.timeout
    lat, t0 = [], time.monotonic()
    for i in range(args.n):
        rid = "r%d" % i
        t = time.monotonic()
        conn.send(queue, body, headers={"persistent": args.persistent, "seq": str(i), "receipt": rid})
        if not lst.wait(rid, deadline):
            break
        lat.append(time.monotonic() - t)
    out.put(("producer", {"sent": len(lat), "secs": time.monotonic() - t0, "lat": lat}))
    conn.disconnect()


class Consumer(stomp.ConnectionListener):
    def __init__(self, n):
        self.n, self.seen, self.dups = n, set(), 0
        self.first = self.last = None
        self.done = threading.Event()
        self.conn = None

    def on_message(self, frame):
        now = time.monotonic()
        self.first = self.first or now
        self.last = now
        seq = frame.headers.get("seq")
        if seq in self.seen:
            self.dups += 1
        self.seen.add(seq)
        self.conn.ack(frame.headers["ack"])
        if len(self.seen) >= self.n:
            self.done.set()


def consume(args, queue, ready, out):
    lst = Consumer(args.n)
    conn = connect(args.port, lst)
    lst.conn = conn
    conn.subscribe(queue, id="1", ack="client-individual")
    ready.set()
    lst.done.wait(args.timeout)
    secs = (lst.last - lst.first) if lst.first else 0
    out.put(("consumer", {"received": len(lst.seen), "dups": lst.dups, "secs": secs}))
    conn.disconnect()


def run(args, queue):
    ctx = mp.get_context("fork")
    out, ready, go = ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=consume, args=(args, queue, ready, out)),
             ctx.Process(target=produce, args=(args, queue, go, out))]
    procs[0].start()
    if not ready.wait(args.timeout):
        procs[0].terminate()
        sys.exit("consumer did not subscribe")
    procs[1].start()
    go.set()
    res = {}
    try:
        while len(res) < 2:
            who, r = out.get(timeout=args.timeout + 10)
            res[who] = r
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
    return res


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    return sorted_vals[min(len(sorted_vals) - 1, int(round(p / 100 * (len(sorted_vals) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="STOMP port on 127.0.0.1")
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--persistent", default="true", choices=["true", "false"])
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=120.0, help="bound on the run, seconds")
    args = ap.parse_args()
    if not 0 < args.n <= 200000:
        sys.exit("-n must be in 1..200000")
    tag = "%d.%d" % (os.getpid(), int(time.time()))
    if args.warmup:
        w = argparse.Namespace(**vars(args))
        w.n = args.warmup
        run(w, "/queue/stomp_check.warmup." + tag)
    res = run(args, "/queue/stomp_check." + tag)
    p, c = res["producer"], res["consumer"]
    lat = sorted(p["lat"])
    print("RESULT " + json.dumps({
        "client": "stomp.py %s" % ".".join(map(str, stomp.__version__)),
        "persistent": args.persistent == "true", "size": args.size, "count": args.n,
        "receipted": p["sent"], "consumed": c["received"],
        "lost": p["sent"] - c["received"] if c["received"] < p["sent"] else 0, "duplicates": c["dups"],
        "produce_rate": round(p["sent"] / p["secs"], 1) if p["secs"] else 0,
        "consume_rate": round(c["received"] / c["secs"], 1) if c["secs"] else 0,
        "receipt_p50_ms": round(pct(lat, 50) * 1000, 3), "receipt_p99_ms": round(pct(lat, 99) * 1000, 3),
    }))


if __name__ == "__main__":
    main()
