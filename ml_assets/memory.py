"""Giving freed memory back to the operating system between the steps of one process.

The training job runs its steps one after another in one process (``ml_assets.execution``). A step
that held a large frame frees it when it ends, but the allocators keep the pages: glibc's malloc
holds freed heap memory for reuse (the thousands of per-day frames read one at a time fragment it)
and pyarrow's memory pool (jemalloc) keeps freed pages until they decay. The next step's own peak
then comes on top of the previous step's: at ten times the demo data the evaluation started from
4.4 GiB resident, mostly freed memory of the model step. ``release_freed_memory`` collects garbage and
asks both allocators to return what is free; a step calls it when it starts, with the previous
step's objects gone. It changes no result, only resident memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys


def release_freed_memory() -> None:
    """Collect garbage, release pyarrow's unused pool memory (when pyarrow is loaded) and trim
    glibc's heaps (``malloc_trim(0)``; nothing on other C libraries)."""
    gc.collect()
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim(0)
        except (OSError, AttributeError):  # musl and others: no malloc_trim
            pass
