"""curate.memory.release gives the heap's free pages back to the OS (glibc's malloc_trim)."""

import subprocess
import sys
import textwrap

import pytest

from curate import memory

PROBE = textwrap.dedent("""
    import sys
    from curate import memory

    def rss_mb():
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("VmRSS"))

    # 300 MB in 2 KB blocks (malloc's heap, not mmap); every 16th kept alive so glibc cannot
    # shrink the heap from its top by itself: the free blocks stay in its lists until a trim
    blocks = [bytearray(2048) for _ in range(150_000)]
    keep = blocks[::16]
    del blocks
    before = rss_mb()
    ok = memory.release()
    print(ok, before, rss_mb(), len(keep))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
def test_release_returns_freed_heap_pages_to_the_os():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    ok, before, after = out[0] == "True", int(out[1]), int(out[2])
    assert ok
    assert before - after > 150, f"resident size {before} MB before the trim, {after} MB after"


def test_release_is_safe_to_call_repeatedly():
    first = memory.release()
    assert memory.release() is first
