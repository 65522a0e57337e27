# Every exception gilstudy defines, in one place. Each subclasses the nearest built-in
# exception, so callers who catch the built-in catch ours too.

__all__ = ["GilstudyError", "UnknownKernelError"]


class GilstudyError(Exception):
    """Base of gilstudy's own failures (not of bad arguments, which get built-in errors)."""


class UnknownKernelError(GilstudyError, LookupError):
    """A kernel name or implementation that gilstudy does not have; the message lists the
    valid choices."""
