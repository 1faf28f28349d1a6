"""The host's side of a benchmark, from /proc: memory (resident and proportional) of a set of
processes at their peak, sampled in a thread, and the CPU they and the machine used."""
import os
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def _rss(pid):
    """Resident bytes of a process (0 if it is gone)."""
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _pss(pid):
    """Proportional resident bytes: each shared page split between the processes sharing it."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0


def _process_cpu(pid):
    """CPU seconds (user + system) a process has used (0 if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _machine_cpu():
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    total = sum(fields[:8])                     # guest time is already counted in user
    return total - fields[3] - fields[4], total  # less idle and iowait


def _threads_and_files():
    with open("/proc/self/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return threads, len(os.listdir("/proc/self/fd"))


class CpuMark:
    """CPU used from now on: the machine's cores, and by whom. processes() -> [(key, pid)] with
    keys "host", "mosquitto" or a node ID; a chip started later counts from its start."""

    def __init__(self, processes):
        self.processes = processes
        self.machine = _machine_cpu()
        self.at = time.monotonic()
        self.used = {pid: _process_cpu(pid) for _, pid in processes()}

    def since(self):
        """(share of all cores busy, {"chips"|"host"|"mosquitto": share of one core})."""
        busy, total = _machine_cpu()
        elapsed = time.monotonic() - self.at
        by = {"chips": 0.0, "host": 0.0, "mosquitto": 0.0}
        for key, pid in self.processes():
            by[key if key in by else "chips"] += (_process_cpu(pid) - self.used.get(pid, 0.0)) / elapsed
        return (busy - self.machine[0]) / max(1, total - self.machine[1]), by


class HostMeter:
    """Every `period` s, the memory of the fleet's host side (processes() as for CpuMark; a
    restarted chip counts under its node) and this process's threads and open files."""

    def __init__(self, processes, period=0.5):
        self.processes = processes
        self.period = period
        self.peak_rss = self.peak_pss = 0
        self.peak_by_key = {}
        self.peak_threads = self.peak_files = 0
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="host-meter")

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()

    def check(self):
        """Raise what stopped the sampling early, if anything: the peaks would be wrong."""
        if self.error:
            raise RuntimeError("host meter failed: %r" % self.error)

    def _run(self):
        try:
            while True:
                self.sample()
                if self._stop.wait(self.period):
                    return
        except Exception as e:
            self.error = e

    def sample(self):
        rss = pss = 0
        for key, pid in self.processes():
            r = _rss(pid)
            rss += r
            pss += _pss(pid)
            self.peak_by_key[key] = max(r, self.peak_by_key.get(key, 0))
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        threads, files = _threads_and_files()
        self.peak_threads, self.peak_files = max(self.peak_threads, threads), max(self.peak_files, files)

    def chip_peaks(self):
        return [v for k, v in self.peak_by_key.items() if k not in ("host", "mosquitto")]
