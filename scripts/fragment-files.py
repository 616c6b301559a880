#!/usr/bin/env python3
"""How many fragment files a second this disk takes, without Tessera in the way.

Many threads each write fragment-sized files the way a storage node does, and the script prints
files/s, MB/s and latency percentiles. It tells whether a PUT workload is held back by the code or
by the disk: a 1 MiB PUT writes six fragments of 256 KiB, each one file.

  node     create under tmp/ with O_DIRECT, write, fsync, rename into one of 256 directories,
           fsync that directory (what `FragmentFile::commit` does)
  syncfs   the same, but one syncfs() at a time stands in for both fsyncs of every file that
           joined it (a group commit of file creations)
  rewrite  overwrite blocks of one preallocated file per thread with O_DIRECT, then fdatasync:
           the most a log of fragments could get out of the disk

usage: scripts/fragment-files.py MODE [THREADS (48)] [SECONDS (8)] [KIB (256)]
       DIR (default /tmp/fragment-files) is created, and removed afterwards.
"""
import ctypes
import mmap
import os
import secrets
import shutil
import sys
import threading
import time

MODES = ("node", "syncfs", "rewrite")
REWRITE_BLOCKS = 64


class GroupSync:
    """One syncfs() at a time; a caller returns once a syncfs that began after its call ended."""

    def __init__(self, fd):
        self.fd, self.asked, self.done = fd, 0, 0
        self.cv = threading.Condition()
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            with self.cv:
                while self.asked == self.done:
                    self.cv.wait()
                covers = self.asked
            if self.libc.syncfs(self.fd) != 0:
                # The writers wait on this thread: end the whole run rather than leave them.
                print(f"syncfs: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
                os._exit(1)
            with self.cv:
                self.done = covers
                self.cv.notify_all()

    def wait(self):
        with self.cv:
            self.asked += 1
            mine = self.asked
            self.cv.notify_all()
            while self.done < mine:
                self.cv.wait()


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in MODES:
        sys.exit(__doc__)
    mode = sys.argv[1]
    given = [int(a) for a in sys.argv[2:5]]
    threads, seconds, kib = given + [48, 8, 256][len(given):]
    root = os.environ.get("DIR", "/tmp/fragment-files")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(f"{root}/tmp")
    dirs = []
    for i in range(256):
        os.mkdir(f"{root}/{i:02x}")
        dirs.append(os.open(f"{root}/{i:02x}", os.O_RDONLY))
    group = GroupSync(os.open(root, os.O_RDONLY)) if mode == "syncfs" else None
    size = kib << 10
    stop = threading.Event()
    latencies = [[] for _ in range(threads)]

    def write_files(me):
        block = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT needs
        block.write(os.urandom(size))
        if mode == "rewrite":
            fd = os.open(f"{root}/log{me}", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
            for i in range(REWRITE_BLOCKS):
                os.pwrite(fd, block, i * size)
            os.fsync(fd)
        n = 0
        while not stop.is_set():
            start = time.monotonic()
            if mode == "rewrite":
                os.pwrite(fd, block, n % REWRITE_BLOCKS * size)
                os.fdatasync(fd)
            else:
                name = secrets.token_hex(8)
                tmp = f"{root}/tmp/{name}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT)
                os.write(fd, block)
                if group is None:
                    os.fsync(fd)
                os.close(fd)
                os.rename(tmp, f"{root}/{name[:2]}/{name}")
                if group is None:
                    os.fsync(dirs[int(name[:2], 16)])
                else:
                    group.wait()
            latencies[me].append(time.monotonic() - start)
            n += 1

    workers = [threading.Thread(target=write_files, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    shutil.rmtree(root, ignore_errors=True)
    done = sorted(t for mine in latencies for t in mine)
    rate = len(done) / seconds
    print(
        f"{mode}, {threads} threads, {kib} KiB: {rate:,.0f} files/s, {rate * size / 1e6:,.0f} MB/s, "
        f"p50 {done[len(done) // 2] * 1e3:.1f} ms, p99 {done[int(len(done) * 0.99)] * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
