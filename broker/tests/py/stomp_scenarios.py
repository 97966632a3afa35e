#!/usr/bin/env python3
"""STOMP scenarios run with stomp.py (a client nobody here wrote) against a
running amq-broker: `stomp_scenarios.py HOST PORT SCENARIO [USER PASS]`.

Each scenario asserts what a user of ActiveMQ's STOMP expects, prints OK and
exits 0, or raises (non-zero exit). Every connection sets TCP_NODELAY.
"""
import socket
import sys
import threading
import time

import stomp

HOST, PORT, SCENARIO = sys.argv[1], int(sys.argv[2]), sys.argv[3]
USER = sys.argv[4] if len(sys.argv) > 4 else None
PASS = sys.argv[5] if len(sys.argv) > 5 else None
WAIT = 5.0


class Collector(stomp.ConnectionListener):
    def __init__(self):
        self.messages = []
        self.errors = []
        self.receipts = []
        self.cond = threading.Condition()

    def on_message(self, frame):
        with self.cond:
            self.messages.append(frame)
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append(frame)
            self.cond.notify_all()

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.append(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def wait_messages(self, n, timeout=WAIT):
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.messages) >= n, timeout)
        assert ok, f"expected {n} messages, got {len(self.messages)}"
        return self.messages[:n]

    def wait_receipt(self, rid, timeout=WAIT):
        with self.cond:
            ok = self.cond.wait_for(lambda: rid in self.receipts, timeout)
        assert ok, f"no RECEIPT {rid}"

    def take(self):
        with self.cond:
            m, self.messages = self.messages, []
            return m


def connect(version="1.2", heartbeats=(0, 0), auto_decode=True):
    cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}[version]
    kwargs = {"auto_decode": auto_decode}
    if version != "1.0":
        kwargs["heartbeats"] = heartbeats
    conn = cls([(HOST, PORT)], **kwargs)
    listener = Collector()
    conn.set_listener("collector", listener)
    conn.connect(USER, PASS, wait=True)
    conn.transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn, listener


def ack(conn, frame, nack=False, **kw):
    """ACK/NACK as the connection's version wants: 1.2 by the `ack` header,
    1.1 by message-id and subscription."""
    fn = conn.nack if nack else conn.ack
    if isinstance(conn, stomp.Connection12):
        return fn(frame.headers["ack"], **kw)
    return fn(frame.headers["message-id"], frame.headers["subscription"], **kw)


def send_receipted(conn, listener, dest, body, rid, **headers):
    conn.send(dest, body, headers=headers, receipt=rid)
    listener.wait_receipt(rid)


def every_frame():
    """CONNECT, SEND, SUBSCRIBE, ACK, NACK, BEGIN, COMMIT, ABORT,
    UNSUBSCRIBE, DISCONNECT (with heart-beats on)."""
    conn, l = connect("1.2", heartbeats=(200, 200))
    q = "/queue/py.frames"
    send_receipted(conn, l, q, "one", "r1", persistent="true", **{"x-trace": "a:b"})
    conn.subscribe(q, id="s1", ack="client-individual")
    (m,) = l.wait_messages(1)
    assert m.body == "one", m.body
    assert m.headers["x-trace"] == "a:b", m.headers
    assert m.headers["persistent"] == "true"
    assert "redelivered" not in m.headers
    l.take()
    ack(conn, m, nack=True)
    (again,) = l.wait_messages(1)
    assert again.headers.get("redelivered") == "true", again.headers
    assert again.headers["message-id"] == m.headers["message-id"]
    l.take()
    ack(conn, again, receipt="acked")
    l.wait_receipt("acked")
    conn.begin("tx1")
    conn.send(q, "committed", transaction="tx1")
    conn.begin("tx2")
    conn.send(q, "aborted", transaction="tx2")
    conn.abort("tx2")
    time.sleep(0.3)
    assert not l.messages, [f.body for f in l.messages]
    conn.commit("tx1")
    (c,) = l.wait_messages(1)
    assert c.body == "committed", c.body
    ack(conn, c)
    conn.unsubscribe("s1", receipt="unsub")
    l.wait_receipt("unsub")
    send_receipted(conn, l, q, "after-unsubscribe", "r2")
    time.sleep(0.5)  # several heart-beat intervals, still connected
    assert conn.is_connected()
    conn.disconnect(receipt="bye")
    l.wait_receipt("bye")
    assert not l.errors, l.errors


def ack_modes():
    p, pl = connect("1.1")
    for mode in ("auto", "client", "client-individual"):
        q = f"/queue/py.ack.{mode}"
        for i in range(3):
            send_receipted(p, pl, q, f"{mode}-{i}", f"{mode}-{i}")
        c, cl = connect("1.1")
        c.subscribe(q, id="s", ack=mode)
        msgs = cl.wait_messages(3)
        assert [m.body for m in msgs] == [f"{mode}-{i}" for i in range(3)]
        if mode == "client":
            ack(c, msgs[1])  # cumulative: 0 and 1
        elif mode == "client-individual":
            ack(c, msgs[1])  # only 1
        c.disconnect(receipt="d")
        cl.wait_receipt("d")
        # What was not acknowledged comes back, flagged redelivered.
        r, rl = connect("1.1")
        r.subscribe(q, id="s", ack="auto")
        time.sleep(0.3)
        got = sorted(m.body for m in rl.take())
        expected = {"auto": [], "client": [f"{mode}-2"], "client-individual": [f"{mode}-0", f"{mode}-2"]}[mode]
        assert got == expected, (mode, got)
        r.disconnect()
    p.disconnect()


def redelivery_on_disconnect():
    p, pl = connect()
    q = "/queue/py.redeliver"
    send_receipted(p, pl, q, "precious", "r", persistent="true")
    a, al = connect()
    a.subscribe(q, id="a", ack="client-individual")
    (m,) = al.wait_messages(1)
    assert "redelivered" not in m.headers
    a.disconnect()
    b, bl = connect()
    b.subscribe(q, id="b", ack="client-individual")
    (again,) = bl.wait_messages(1)
    assert again.body == "precious" and again.headers.get("redelivered") == "true", again.headers
    ack(b, again)
    b.disconnect()
    p.disconnect()


def dead_letter():
    """The broker under test allows 1 redelivery: the second NACK dead-letters."""
    c, l = connect()
    q = "/queue/py.poison"
    send_receipted(c, l, q, "poison", "r", persistent="true")
    c.subscribe(q, id="s", ack="client-individual")
    for expected_redelivered in (False, True):
        (m,) = l.wait_messages(1)
        assert ("redelivered" in m.headers) == expected_redelivered, m.headers
        l.take()
        ack(c, m, nack=True)
    time.sleep(0.3)
    assert not l.messages
    c.subscribe("/queue/ActiveMQ.DLQ", id="dlq", ack="auto")
    (dead,) = l.wait_messages(1)
    assert dead.body == "poison", dead.body
    assert dead.headers["originalDestination"] == q, dead.headers
    c.disconnect()


def topics():
    subs = [connect() for _ in range(3)]
    for i, (c, _) in enumerate(subs):
        c.subscribe("/topic/py.news", id=f"t{i}", ack="auto")
    p, pl = connect()
    time.sleep(0.1)
    for i in range(5):
        send_receipted(p, pl, "/topic/py.news", f"n{i}", f"n{i}")
    for _, l in subs:
        assert [m.body for m in l.wait_messages(5)] == [f"n{i}" for i in range(5)]
    for c, _ in subs:
        c.disconnect()
    p.disconnect()


def binary_body():
    c, l = connect(auto_decode=False)
    payload = bytes(range(256)) * 4
    c.send("/queue/py.bin", payload, headers={"content-type": "application/octet-stream"}, receipt="r")
    l.wait_receipt("r")
    c.subscribe("/queue/py.bin", id="s", ack="auto")
    (m,) = l.wait_messages(1)
    assert m.body == payload, m.body[:32]
    c.disconnect()


def selectors():
    c, l = connect()
    c.subscribe("/queue/py.sel", id="s", ack="auto", headers={"selector": "kind = 'big' AND size > 10"})
    p, pl = connect()
    for kind, size in (("big", "20"), ("small", "20"), ("big", "5"), ("big", "11")):
        send_receipted(p, pl, "/queue/py.sel", f"{kind}-{size}", f"{kind}-{size}", kind=kind, size=size)
    got = [m.body for m in l.wait_messages(2)]
    assert got == ["big-20", "big-11"], got
    time.sleep(0.3)
    assert len(l.messages) == 2, [m.body for m in l.messages]
    c.disconnect()
    p.disconnect()


def request_reply():
    svc, sl = connect()
    svc.subscribe("/queue/py.service", id="svc", ack="auto")
    req, rl = connect()
    req.subscribe("/temp-queue/answers", id="a", ack="auto")
    time.sleep(0.1)
    send_receipted(req, rl, "/queue/py.service", "question", "q", **{"reply-to": "/temp-queue/answers"})
    (q,) = sl.wait_messages(1)
    send_receipted(svc, sl, q.headers["reply-to"], "answer", "a", **{"correlation-id": q.headers["message-id"]})
    (a,) = rl.wait_messages(1)
    assert a.body == "answer" and a.headers["correlation-id"] == q.headers["message-id"], a.headers
    req.disconnect()
    svc.disconnect()


def auth_refused():
    try:
        connect()
    except stomp.exception.ConnectFailedException:
        print("refused as expected")
        return
    raise AssertionError("connected with bad credentials")


SCENARIOS = {f.__name__: f for f in (every_frame, ack_modes, redelivery_on_disconnect, dead_letter, topics, binary_body, selectors, request_reply, auth_refused)}

if __name__ == "__main__":
    SCENARIOS[SCENARIO]()
    print("OK", SCENARIO)
