"""The one exit rule every runner's context manager follows, written once: leaving a with
block normally closes the runner (everything sent is delivered, a worker's error raised);
leaving it because the block raised aborts the runner, so the block's own exception
reaches the caller at once and unchanged.
"""

__all__ = ["ExitRule"]


class ExitRule:
    """Mixin for runners: ``__exit__`` calls ``self.close()`` on a normal exit and
    ``self.abort()`` (which must not raise) when the block raised."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
