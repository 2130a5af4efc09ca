"""Launch planning: arms × seeds → work units (train, then eval), checked
before anything runs, rendered as XManager jobs (`launch/xm_launch.py`) or as
GKE JobSet manifests. See docs/launch.md."""

from sftdiff.launch.plan import (Arm, Job, LaunchConfigError, LaunchPlan,
                                 WorkUnit, apply_overrides, build_plan,
                                 format_commands, format_table, runs_from_arms,
                                 runs_from_json, runs_to_json, select_arms)
from sftdiff.runs.resources import (Resources, UnsupportedAcceleratorError)

__all__ = ["Arm", "Job", "LaunchConfigError", "LaunchPlan", "Resources",
           "UnsupportedAcceleratorError", "WorkUnit", "apply_overrides",
           "build_plan", "format_commands", "format_table", "runs_from_arms",
           "runs_from_json", "runs_to_json", "select_arms"]
