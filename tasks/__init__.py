"""Task suites: `from tasks import get_suite; get_suite("maze-40").target_tasks`."""

from tasks.base import NEEDS, OfflineData, Suite, Task, UnknownSuiteError, get_suite, register_suite, suite_descriptions, suite_names

__all__ = ["NEEDS", "OfflineData", "Suite", "Task", "UnknownSuiteError", "get_suite", "register_suite", "suite_descriptions", "suite_names"]
