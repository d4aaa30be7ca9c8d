#!/usr/bin/env python3
"""Burst: N connections each upload one file, all released at the same moment.

    bench/burst.py --port PORT --body FILE --boundary B [--token T] [-n 1000]

1. Opens all N connections to 127.0.0.1:PORT (one at a time, blocking) and
   waits --settle seconds so the server has accepted them.
2. Releases them together: a few threads, each with a selector over its share
   of the sockets, send every connection's request head and body (the same
   bytes, written by bench/make_upload.py) and read the answers.
3. Prints one JSON line (`BURST_RESULT {...}`) on stdout: successes (201) out
   of N, the status and error counts, the wall time from the release to the
   last answer, per-upload latency (release to complete answer) p50/p90/p95/p99/max,
   and the client's own CPU time (user + system, all threads) over the same
   span, so a client that was the bottleneck shows up.
4. With --watch-pids, also samples every 0.1 s the server's CPU (those
   processes, in cores) and the bytes written to the machine's disks, and
   reports the tail: how long before the last answer the server stopped
   being busy (under one core) and how much the disks wrote meanwhile. A
   long tail with little CPU is time spent waiting for the disk.

Python standard library only. Raises its own RLIMIT_NOFILE to fit N sockets.
"""
import argparse
import json
import math
import os
import resource
import selectors
import socket
import sys
import threading
import time


def raise_fd_limit(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    for limits in ((want, max(want, hard) if hard != resource.RLIM_INFINITY else hard), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return limits[0]
        except (ValueError, OSError):
            continue
    return soft


class Upload:
    """One connection: its socket, how much of the request is sent, its answer."""

    __slots__ = ("sock", "sent", "sending", "buf", "status", "error", "done_at", "header_end", "length", "chunked")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sent = 0
        self.sending = True
        self.buf = bytearray()
        self.status = None
        self.error = None
        self.done_at = None
        self.header_end = -1
        self.length = None
        self.chunked = False

    def answer_complete(self, eof: bool) -> bool:
        """Parses what has been read; True once a whole answer is in."""
        if self.header_end < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            self.header_end = end + 4
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self.length = int(value.strip())
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self.chunked = True
            if self.status == 100:  # an interim answer: drop it and wait for the real one
                del self.buf[: self.header_end]
                self.header_end, self.status, self.length, self.chunked = -1, None, None, False
                return self.answer_complete(eof)
        body = len(self.buf) - self.header_end
        if self.length is not None:
            return body >= self.length
        if self.chunked:
            return self.buf.endswith(b"0\r\n\r\n")
        return eof


def worker(uploads, payload, go: threading.Event, deadline_box, lock, first_error):
    sel = selectors.DefaultSelector()
    pending = 0
    for u in uploads:
        if u.error is None:
            sel.register(u.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, u)
            pending += 1
    go.wait()
    deadline = deadline_box[0]
    view = memoryview(payload)

    def finish(u, error=None):
        nonlocal pending
        u.done_at = time.perf_counter()
        if error is not None and u.status is None:
            u.error = error
        sel.unregister(u.sock)
        u.sock.close()
        pending -= 1

    while pending:
        timeout = deadline - time.perf_counter()
        if timeout <= 0:
            break
        for key, events in sel.select(min(timeout, 1.0)):
            u = key.data
            if events & selectors.EVENT_WRITE and u.sending:
                try:
                    u.sent += u.sock.send(view[u.sent :])
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:  # the server answered early and closed, or reset
                    u.sending = False
                    sel.modify(u.sock, selectors.EVENT_READ, u)
                    with lock:
                        first_error.setdefault(type(e).__name__, str(e))
                else:
                    if u.sent == len(payload):
                        u.sending = False
                        sel.modify(u.sock, selectors.EVENT_READ, u)
            if events & selectors.EVENT_READ:
                try:
                    chunk = u.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    finish(u, type(e).__name__)
                    continue
                u.buf += chunk
                eof = not chunk
                if u.answer_complete(eof):
                    finish(u)
                elif eof:
                    finish(u, "closed before a complete answer")
    for key in list(sel.get_map().values()):
        u = key.data
        u.error = u.error or "timeout"
        u.sock.close()
    sel.close()


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass  # the process is gone
    return total


def disk_sectors_written():
    """Sectors written to whole disks (those in /sys/block) since boot."""
    disks = set(os.listdir("/sys/block"))
    total = 0
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 9 and fields[2] in disks:
                total += int(fields[9])
    return total


def sample(pids, stop: threading.Event, out, interval=0.1):
    """Appends (seconds since start, server cores, disk MB/s) every interval."""
    hz = os.sysconf("SC_CLK_TCK")
    t0 = last_t = time.perf_counter()
    last_c, last_d = cpu_ticks(pids), disk_sectors_written()
    while not stop.wait(interval):
        t, c, d = time.perf_counter(), cpu_ticks(pids), disk_sectors_written()
        dt = t - last_t
        out.append((round(t - t0, 2), round((c - last_c) / hz / dt, 2), round((d - last_d) * 512 / 1e6 / dt, 1)))
        last_t, last_c, last_d = t, c, d


def tail_of(timeline, wall):
    """From the last sample with the server busy (>= 1 core) to the last
    answer: its length and what the disks wrote meanwhile."""
    busy = [t for t, cores, _ in timeline if cores >= 1.0 and t <= wall + 0.1]
    start = busy[-1] if busy else 0.0
    written = sum(mb_s * 0.1 for t, _, mb_s in timeline if start < t <= wall + 0.1)
    return round(max(0.0, wall - start), 2), round(written, 1)


def percentile(sorted_values, p):
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/documents")
    ap.add_argument("--body", required=True, help="multipart body file from bench/make_upload.py")
    ap.add_argument("--boundary", required=True)
    ap.add_argument("--token", default="", help="bearer token (docflow); empty: no Authorization header")
    ap.add_argument("-n", "--connections", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=4, help="sender threads, each with its own selector")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between the last connect and the release")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds after the release to give up")
    ap.add_argument("--watch-pids", default="", help="server process ids whose CPU to sample (space-separated)")
    args = ap.parse_args()

    limit = raise_fd_limit(args.connections + 64)
    if limit < args.connections + 16:
        print(f"burst: the fd limit is {limit}, too low for {args.connections} connections", file=sys.stderr)
        return 2

    with open(args.body, "rb") as f:
        body = f.read()
    head = (
        f"POST {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={args.boundary}\r\n"
        f"Content-Length: {len(body)}\r\n"
        + (f"Authorization: Bearer {args.token}\r\n" if args.token else "")
        + "\r\n"
    ).encode()
    payload = head + body

    # 1. Open every connection first.
    uploads = []
    t_connect = time.perf_counter()
    for _ in range(args.connections):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        u = Upload(s)
        try:
            s.settimeout(10)
            s.connect((args.host, args.port))
            s.setblocking(False)
        except OSError as e:
            u.error = "connect: " + type(e).__name__
            s.close()
        uploads.append(u)
    connect_s = time.perf_counter() - t_connect
    time.sleep(args.settle)

    # 2. Release them together.
    go = threading.Event()
    deadline_box = [0.0]
    lock = threading.Lock()
    first_error = {}
    shares = [uploads[i :: args.threads] for i in range(args.threads)]
    threads = [
        threading.Thread(target=worker, args=(share, payload, go, deadline_box, lock, first_error)) for share in shares
    ]
    for t in threads:
        t.start()
    time.sleep(0.05)  # every thread is parked on go.wait()
    timeline, sampling = [], threading.Event()
    sampler = threading.Thread(target=sample, args=(args.watch_pids.split(), sampling, timeline))
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    deadline_box[0] = t0 + args.timeout
    if args.watch_pids:
        sampler.start()
    go.set()
    for t in threads:
        t.join()
    t_end = time.perf_counter()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    if args.watch_pids:
        time.sleep(0.15)  # one more sample past the last answer
        sampling.set()
        sampler.join()

    # 3. Report.
    statuses, errors = {}, {}
    latencies, answered = [], []
    for u in uploads:
        if u.status is not None and u.done_at is not None:
            statuses[str(u.status)] = statuses.get(str(u.status), 0) + 1
            answered.append(u.done_at - t0)
            if u.status == 201:
                latencies.append(u.done_at - t0)
        else:
            errors[u.error or "unknown"] = errors.get(u.error or "unknown", 0) + 1
    latencies.sort()
    successes = len(latencies)
    wall = max(answered) if answered else t_end - t0
    client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)

    def ms(v):
        return None if v is None else round(v * 1000, 1)

    result = {
        "connections": args.connections,
        "successes": successes,
        "statuses": statuses,
        "errors": errors,
        "first_send_errors": first_error,
        "request_body_bytes": len(body),
        "connect_all_s": round(connect_s, 3),
        "wall_s": round(wall, 3),
        "p50_ms": ms(percentile(latencies, 50)),
        "p90_ms": ms(percentile(latencies, 90)),
        "p95_ms": ms(percentile(latencies, 95)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(latencies[-1] if latencies else None),
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_user_s": round(cpu1.ru_utime - cpu0.ru_utime, 3),
        "client_cpu_system_s": round(cpu1.ru_stime - cpu0.ru_stime, 3),
        "client_threads": args.threads,
    }
    if args.watch_pids:
        result["timeline"] = timeline
        result["tail_s"], result["tail_disk_mb"] = tail_of(timeline, wall)
    print("BURST_RESULT " + json.dumps(result), flush=True)
    print(
        f"burst: {successes}/{args.connections} uploads answered 201 in {wall:.2f} s "
        f"(p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms); client CPU {client_cpu:.2f} s "
        f"over {t_end - t0:.2f} s; statuses {statuses}; errors {errors}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
