"""Errors that sked raises, split by what the caller should do about them.

    SkedError
    ├── InvalidSpecError      the user's ScheduledJob is wrong; report it, never retry
    │   └── InvalidScheduleError
    └── ConfigurationError    the operator's own flags or environment are wrong; exit

Kubernetes API failures are not wrapped here: the API layer retries the
transient ones itself and lets the rest propagate as ApiException.
"""


class SkedError(Exception):
    """Base class of every error sked raises on purpose."""


class InvalidSpecError(SkedError):
    """A ScheduledJob's spec cannot be acted on; the message names the field and the fix."""

    def __init__(self, message: str, *, reason: str = "InvalidSpec") -> None:
        super().__init__(message)
        self.reason = reason


class InvalidScheduleError(InvalidSpecError):
    """The schedule or time zone of a ScheduledJob is invalid."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="InvalidSchedule")


class ConfigurationError(SkedError):
    """The operator was started with settings that contradict each other or are out of range."""
