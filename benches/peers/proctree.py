"""CPU and RSS of a whole process tree, sampled from /proc.

cpu_seconds: the sum, over every process seen in the tree, of the last utime+stime sampled for
it (a process that exits between two samples loses at most one interval of CPU).
peak_rss_bytes: the largest sum of RSS over the live tree at one sample.
"""

import os
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        s = f.read()
    rest = s[s.rindex(b")") + 2:].split()
    # rest[0] is field 3 (state): ppid = field 4, utime = 14, stime = 15, rss = 24
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[21]) * PAGE


class TreeSampler:
    def __init__(self, root_pid, interval=0.25):
        self.root, self.interval = root_pid, interval
        self.ticks = {}  # pid -> last utime+stime seen
        self.peak_rss = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def sample(self):
        stats = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    stats[int(name)] = _stat(name)
                except (OSError, ValueError):
                    pass  # exited while we looked
        children = {}
        for pid, (ppid, _, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.root] if self.root in stats else []
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        with self._lock:
            for pid in tree:
                self.ticks[pid] = stats[pid][1]
            self.peak_rss = max(self.peak_rss, sum(stats[p][2] for p in tree))

    def cpu_seconds(self):
        with self._lock:
            return sum(self.ticks.values()) / TICK

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.sample()
