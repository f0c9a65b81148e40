"""The one exception type the package raises for problems a user can fix."""


class NeuroEarError(Exception):
    """A clear, one-line problem with an input, a model file or a device.

    The CLI prints ``str(error)`` on stderr and exits non-zero: messages must name the
    file or device and say what is wrong (and, where possible, how to fix it).
    """
