"""One exception type for everything a user can cause: the CLI prints it as one line, no traceback."""


class LatkitError(Exception):
    """A failure with a message that already says what went wrong and what to do."""


class DeviceFileError(LatkitError):
    """A device file that cannot be read or does not match the schema."""


class ProfilerUnavailable(LatkitError):
    """The runtime or hardware a device file asks for is not usable on this machine."""
