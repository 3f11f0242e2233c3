"""Keep freed heap memory in a training process instead of handing it back to the kernel.

A training step frees and re-allocates the same activation buffers every step.
glibc's malloc returns freed memory at the top of its heap to the kernel once
more than ``M_TRIM_THRESHOLD`` is free there, and serves blocks above its
(dynamic) ``M_MMAP_THRESHOLD`` with fresh ``mmap`` calls. Either way the next
step touches new pages, and the kernel faults each one in. For the bench's VAE
on one CPU thread that was ~6,000 minor page faults and ~9 ms of kernel time a
step of ~95 ms (bench/RESULTS.md, "Each step's freed memory, kept").

With both thresholds fixed high, the heap keeps what a step freed and the next
step reuses it: the faults go and the process's resident memory stays at its
per-step peak between steps instead of dropping back. Only glibc has
``mallopt``; elsewhere (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks up to 32 MiB (glibc's own ceiling for the dynamic threshold on 64-bit) come from the
# heap; freed heap memory is trimmed only beyond 1 GiB.
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 2**30

_kept = False  # whether keep_freed_memory took effect in this process


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it; musl and macOS libc do not
        return libc if hasattr(libc, "mallopt") else None
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Make this process's malloc keep freed memory for reuse (see the module docstring).

    Returns:
        True when glibc took both settings; False where there is no glibc ``mallopt``
        or it refused one (the process then keeps glibc's defaults).
    """
    global _kept
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success, 0 on error. The mmap threshold goes first: setting it also
    # stops glibc from moving both thresholds on its own.
    _kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    return _kept


def keeping_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` took effect in this process (a training worker reports it)."""
    return _kept
