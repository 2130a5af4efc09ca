"""RunSpec lives with the run plan (`sftdiff.runs.spec`); this name stays for
the study code and its users."""

from sftdiff.runs.spec import RunSpec  # noqa: F401

__all__ = ["RunSpec"]
