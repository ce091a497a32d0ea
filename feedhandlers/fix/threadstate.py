"""Keeps a Python thread state on each QuickFIX session thread, so callbacks do not rebuild it.

QuickFIX calls into Python (fromApp ...) from its own C++ threads. Each SWIG callback does
PyGILState_Ensure / Release; on a thread Python does not know, that creates and destroys a whole
thread state every time (with an mmap / munmap of its frame stack): ~15 us of a ~130 us fill. One
extra, never released PyGILState_Ensure on the thread keeps its thread state alive, so later callbacks
only take and drop the GIL. Cost: one thread state (a few KB) left behind per FIX connection thread.
"""
from __future__ import annotations

import ctypes
import threading

_local = threading.local()


def pin_thread_state() -> None:
    """Call at the top of a callback on a QuickFIX thread (cheap after the first call on a thread)."""
    if not getattr(_local, "pinned", False):
        ctypes.pythonapi.PyGILState_Ensure()
        _local.pinned = True
