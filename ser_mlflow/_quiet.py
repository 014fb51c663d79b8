"""Import TensorFlow without its C++ start-up chatter on stderr.

TensorFlow's native code logs (oneDNN notice, "could not find cuda drivers", cuInit
errors on CPU-only machines) before absl logging is initialised, so
``TF_CPP_MIN_LOG_LEVEL`` cannot silence them. A newcomer reads them as failures; we
silence file descriptor 2 only while TensorFlow imports and probes devices.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

_done = False


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow/Keras once with native start-up logs muted (errors still raise)."""
    global _done
    if _done:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_to_devnull():
        import tensorflow as tf

        tf.config.list_physical_devices()
        import keras  # noqa: F401
    # Python-side TF warnings (e.g. retracing notices when several models are built in one
    # sweep process) are about TF internals, not the user's run.
    tf.get_logger().setLevel("ERROR")
    _done = True
