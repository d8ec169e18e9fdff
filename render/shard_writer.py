"""Write a shard on a fresh thread stack, so that its lzf-compressed bytes depend only on the data.

h5py's lzf compressor (``lzf_c.c``, built with ``INIT_HTAB = 0``) keeps its 16 k-entry hash
table of match positions on the stack without clearing it (h5py issue #419). Stale values
left there by earlier calls in the same thread — OpenCV, numpy, GL, earlier shards — that
happen to point into the chunk being compressed are taken as match candidates, so the same
arrays can compress to different (equally valid) bytes in two processes with different
histories: a resumed run then differs bitwise from an uninterrupted one.

:func:`write_on_fresh_stack` runs the write in a new thread whose stack is too large for
glibc's cache of thread stacks (40 MiB), hence freshly mapped zero pages: the hash table
starts empty and later chunks of the same shard see only what this write left there.
The cost is one thread start per shard (virtual memory only; pages are touched on use).
"""
from __future__ import annotations

import threading
from typing import Any, Callable

#: Larger than glibc's thread-stack cache, so an exited writer's stack is unmapped, never reused.
FRESH_STACK_BYTES = 64 * 1024 * 1024


def write_on_fresh_stack(write: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``write(*args, **kwargs)`` on a new thread with a fresh stack; its result, or its exception re-raised."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = write(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    previous = threading.stack_size(FRESH_STACK_BYTES)
    try:
        thread = threading.Thread(target=run, name="shard-writer")
        thread.start()
    finally:
        threading.stack_size(previous)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
