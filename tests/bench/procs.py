"""The simulator in its own process, and what this process holds."""
import gc
import os
import queue
import re
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class SimProcess:
    """`python -m simulator` in a child process, driven by its console.

    Used where this process's CPU time or memory is measured, so that the
    device's own work is not counted as the module's."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--port", "0", "--quiet",
             *args], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1)
        line = self.proc.stdout.readline()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", line)
        if match is None:
            self.stop()
            raise RuntimeError("simulator did not start: %r" % (line,))
        self.port = int(match.group(1))
        self.url = match.group(0)
        # the console's answers, read as they come so the pipe never fills
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True,
                         name="simulator console").start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def state(self, timeout=10.):
        """The device's internal state, from the console's `state`."""
        while not self.lines.empty():
            self.lines.get_nowait()
        self.command("state")
        state = {}
        while "faults" not in state:
            key, _, value = self.lines.get(timeout=timeout).partition(": ")
            state[key] = value
        return state

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.command("quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def os_threads():
    return len(os.listdir("/proc/self/task"))


def footprint():
    """(RSS KiB, open fds, threads) after a full garbage collection."""
    gc.collect()
    return rss_kib(), open_fds(), os_threads()


def proc_cpu(pid):
    """CPU seconds process pid's threads have used so far (schedstat's
    nanoseconds: /proc/<pid>/stat counts whole 10 ms ticks, too coarse
    for an idle klippy)."""
    total = 0
    for task in os.listdir("/proc/%d/task" % (pid,)):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return total * 1e-9


def proc_footprint(pid):
    """(RSS KiB, open fds, threads) of process pid."""
    rss = 0
    with open("/proc/%d/status" % (pid,)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return (rss, len(os.listdir("/proc/%d/fd" % (pid,))),
            len(os.listdir("/proc/%d/task" % (pid,))))


def thread_cpu(thread):
    """CPU seconds a running threading.Thread has used so far."""
    clock = time.pthread_getcpuclockid(thread.ident)
    return time.clock_gettime(clock)
