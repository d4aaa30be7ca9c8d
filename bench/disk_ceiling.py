#!/usr/bin/env python3
"""The disk's ceiling for durable uploads: how many files per second this
machine can make durable the way docflow makes an upload durable, with no
HTTP, no parsing and no hashing in the way.

    bench/disk_ceiling.py DIR FILE_BYTES [SECONDS] [THREADS]

Each thread loops: create an unnamed file (O_TMPFILE), write FILE_BYTES in
64 KiB writes, fsync it, link it into one of 256 shard directories, fsync
that directory, then append 4 KiB to a shared log file and fdatasync it (the
database commit's write-ahead log). Prints one line
`DISK_RESULT {"files_per_s", "mb_per_s", "threads", "file_bytes", "seconds"}`
(MB: 10^6 bytes), then removes what it wrote.

nginx's upload figure in the same run has none of these syncs: its files
stay in the page cache. When nginx's MB/s is above this ceiling, no
implementation that fsyncs every upload can reach it on this disk.
"""
import json
import os
import shutil
import sys
import threading
import time

CHUNK = 64 * 1024


def main():
    root, size = sys.argv[1], int(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    for i in range(256):
        os.makedirs(os.path.join(root, "%02x" % i), exist_ok=True)
    log = os.open(os.path.join(root, "wal"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    # os.link follows /proc/self/fd/N (linkat with AT_SYMLINK_FOLLOW) only
    # when given a source directory descriptor.
    proc_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    block = os.urandom(CHUNK)
    page = os.urandom(4096)
    stop = threading.Event()
    counts = [0] * threads

    def work(t):
        n = 0
        while not stop.is_set():
            name = "%d-%d" % (t, n)
            fd = os.open(os.path.join(root, "tmp"), os.O_WRONLY | os.O_TMPFILE, 0o600)
            left = size
            while left > 0:
                left -= os.write(fd, block[: min(CHUNK, left)])
            os.fsync(fd)
            shard = os.path.join(root, "%02x" % ((n * 7 + t) % 256))
            os.link(str(fd), os.path.join(shard, name), src_dir_fd=proc_fds)
            os.close(fd)
            dfd = os.open(shard, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
            os.write(log, page)
            os.fdatasync(log)
            n += 1
            counts[t] = n

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - start
    files = sum(counts)
    print("DISK_RESULT " + json.dumps({
        "files_per_s": round(files / elapsed, 1),
        "mb_per_s": round(files * size / elapsed / 1e6, 1),
        "threads": threads,
        "file_bytes": size,
        "seconds": round(elapsed, 2),
    }))
    os.close(log)
    os.close(proc_fds)
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
