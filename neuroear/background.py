"""Run a producer in a background thread and hand its items to the caller as a generator.

Used where work must overlap with the caller's (``audio.prefetch``: decoding beside inference)
or runs callback-style (``live.session.listen``: the live loop feeding a generator).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

Put = Callable[[Any], bool]  # hands one item to the consumer; False once the consumer has gone


def background(produce: Callable[[Put, threading.Event], None], *, depth: int, name: str, join_seconds: float = 0.0) -> Iterator[Any]:
    """Yield what ``produce(put, stop)`` puts, produced by a daemon thread up to ``depth`` ahead.

    An exception in ``produce`` is raised here after the items put before it. Closing this
    generator (or Ctrl-C in the caller) sets ``stop``, which ``put`` honours (returns False), so
    the producer can finish and close what it holds; with ``join_seconds`` the consumer waits
    up to that long for it to finish (a thread still holding native objects, such as a soxr
    resampler, at interpreter exit makes their bindings print leak reports).
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def send(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                q.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            produce(lambda item: send("item", item), stop)
            send("done", None)
        except BaseException as exc:  # handed to the consumer, raised there
            send("error", exc)

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "item":
                yield value
            elif kind == "done":
                return
            else:
                raise value
    finally:
        stop.set()
        if join_seconds > 0 and t is not threading.current_thread():
            t.join(join_seconds)
