"""python-socketio against a real confab: an outside Socket.IO client that is not
socket.io-client. Starts its own server (target/debug/confab or $CONFAB_BIN) on a
free loopback port, drives it as a Python app would (polling then upgrade, and
websocket only), and stops exactly that process. Every wait is bounded.

    python3 tests/python/client_test.py
"""

import os
import re
import subprocess
import sys
import time

import socketio

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUOTAS_OFF = "--quota-messages-per-user off --quota-messages-per-ip off --quota-dms-per-user off --quota-dms-per-ip off --quota-joins-per-user off --quota-rooms-per-user off --quota-rooms-per-ip off --quota-connects-per-user off --quota-connects-per-ip off --max-connections-per-ip 0 --protocol-errors-burst 100000".split()
BIN = os.environ.get("CONFAB_BIN", os.path.join(ROOT, "target", "debug", "confab"))


def start_server():
    proc = subprocess.Popen(
        [BIN, "serve", "--bind", "127.0.0.1:0", "--auth", "open", *QUOTAS_OFF, "--ui-dir", os.path.join(ROOT, "ui")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line or "")
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("confab did not start")


# The keys of a message, in wire order (every message here carries a clientId).
MESSAGE_KEYS = ["id", "room", "from", "fromId", "text", "ts", "clientId"]


def client(url, name, transports, got, sessions):
    c = socketio.Client(reconnection=False)

    @c.on("session")
    def on_session(s):
        sessions.append(s)

    @c.on("message:new")
    def on_message(m):
        assert list(m.keys()) == MESSAGE_KEYS, m
        got.append((m["room"], m["from"], m["text"], m["id"], m["fromId"]))

    c.connect(url, auth={"name": name}, transports=transports, wait_timeout=5)
    return c


def wait_until(cond, seconds=5.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def main():
    proc, url = start_server()
    checks = 0
    try:
        got_a, got_b = [], []
        sess_a, sess_b = [], []
        a = client(url, "py-alice", ["polling", "websocket"], got_a, sess_a)
        b = client(url, "py-bob", ["websocket"], got_b, sess_b)
        # The session push: in open mode the user id is the name; no roles, no expiry.
        assert wait_until(lambda: sess_a and sess_b), (sess_a, sess_b)
        for sess, name in ((sess_a, "py-alice"), (sess_b, "py-bob")):
            assert sess == [{"user": {"id": name, "name": name, "roles": []}, "rooms": ["general"], "unread": {}}], sess
        # The default client starts on polling and upgrades to websocket.
        assert wait_until(lambda: a.transport() == "websocket"), a.transport()
        assert b.transport() == "websocket"
        checks += 1
        for c in (a, b):
            ack = c.call("room:join", {"room": "py"}, timeout=5)
            assert ack["ok"] is True and ack["room"] == "py", ack
        checks += 1
        sent = []
        for i in range(25):
            for c, who in ((a, "py-alice"), (b, "py-bob")):
                ack = c.call("message:send", {"room": "py", "text": f"{who} {i}", "clientId": f"{who}-{i}"}, timeout=5)
                assert ack["ok"] is True, ack
                sent.append(ack["message"]["id"])
        # Both clients get every message once, in the same order, with the sender's name.
        assert wait_until(lambda: len(got_a) >= 50 and len(got_b) >= 50), (len(got_a), len(got_b))
        assert [m[3] for m in got_a] == [m[3] for m in got_b] == sent, "order or loss"
        assert {m[1] for m in got_a} == {"py-alice", "py-bob"}
        # fromId is the sender's user id: the name, in open mode.
        assert all(m[4] == m[1] for m in got_a + got_b), got_a + got_b
        checks += 1
        # A resend with the same clientId returns the original message.
        again = a.call("message:send", {"room": "py", "text": "py-alice 0", "clientId": "py-alice-0"}, timeout=5)
        assert again["ok"] is True and again["message"]["id"] == sent[0], again
        checks += 1
        # Bad input gets the documented error code, the connection stays usable.
        bad = a.call("room:join", {"room": 5}, timeout=5)
        assert bad["ok"] is False and bad["error"]["code"] == "bad_request", bad
        unknown = a.call("room:nuke", {}, timeout=5)
        assert unknown["ok"] is False and unknown["error"]["code"] == "bad_request", unknown
        hist = a.call("message:history", {"room": "py", "limit": 5}, timeout=5)
        assert hist["ok"] is True and [m["id"] for m in hist["messages"]] == sent[-5:], hist
        checks += 1
        # A refused handshake reaches the client as a connect error with the code.
        refused = socketio.Client(reconnection=False)
        errors = []
        refused.on("connect_error", lambda data: errors.append(data))
        try:
            refused.connect(url, auth={"name": ""}, transports=["websocket"], wait_timeout=5)
            raise AssertionError("an empty name was accepted")
        except socketio.exceptions.ConnectionError:
            pass
        assert wait_until(lambda: errors), "no connect_error"
        message = errors[0]["message"] if isinstance(errors[0], dict) else str(errors[0])
        assert message.startswith("invalid_name: "), errors
        checks += 1
        a.disconnect()
        b.disconnect()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(f"python-socketio: {checks} passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report as a failure line, non-zero exit
        print(f"python-socketio: FAILED: {e!r}", file=sys.stderr)
        sys.exit(1)
