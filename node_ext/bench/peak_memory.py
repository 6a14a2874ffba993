"""Peak resident memory of a piece of work, for CPU memory measurements.

resource.getrusage's ru_maxrss is useless in a child process: Linux starts it at the parent's
high-water mark. /proc/self/status's VmHWM belongs to the process's own address space; writing 5
to /proc/self/clear_refs resets it to the current RSS, so the peak of the work alone is
VmHWM afterwards minus VmRSS before."""
import os


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_bytes(work):
    """Runs work() and returns the growth of the resident set at its peak, in bytes."""
    if not os.path.exists("/proc/self/clear_refs"):
        import resource
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        work()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    base = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    work()
    return max(0, _status_kib("VmHWM") - base) * 1024
