"""Peak resident memory of a piece of work, for CPU memory measurements.

resource.getrusage's ru_maxrss is useless in a child process: Linux starts it at the parent's
high-water mark. /proc/self/status's VmHWM belongs to the process's own address space; writing 5
to /proc/self/clear_refs resets it to the current RSS, so the peak of the work alone is
VmHWM afterwards minus VmRSS before. Memory the allocator keeps after it was freed would hide
growth (the work reuses it) or fake it (fresh pages for what earlier work left fragmented), so free
memory is first handed back to the system with glibc's malloc_trim."""
import ctypes
import ctypes.util
import os
import subprocess
import sys
import tempfile

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _release_free_memory():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def peak_bytes(work):
    """Runs work() and returns the growth of the resident set at its peak, in bytes."""
    _release_free_memory()
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


def run_python(script, *args, timeout=1800):
    """Runs `python -c script args...` in a fresh process that imports this same node_ext.

    The child starts in an empty directory with this package's parent first on its path: started
    from a source checkout, `-c` would otherwise put the checkout (without its built extension)
    ahead of the installed package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, env=env)
