"""The study: expansion into runs, the local runner and the report.

`expand(study, catalog) -> list[RunSpec]` is what both the local runner
(`python -m sftdiff.study`) and `launch/xm_launch.py` schedule;
`load_study(gin_files, bindings)` + `catalog_for(study)` give its inputs.
"""

from __future__ import annotations

from typing import Sequence

from sftdiff.study.config import ArmDef, StudyConfig
from sftdiff.study.expansion import (Catalog, StudyConfigError, arm_defs,
                                     check_static, expand, validate)
from sftdiff.study.spec import RunSpec


def load_study(gin_files: Sequence[str], bindings: Sequence[str] = (),
               search_paths: Sequence[str] = ()) -> StudyConfig:
  """Parses study gin files (+ `NAME = VALUE` bindings) into a StudyConfig."""
  from sftdiff import gin_utils
  import_configurables()
  gin_utils.parse(gin_files, bindings, search_paths, finalize=False,
                  known_macros=["STUDY_DIR"])
  study = StudyConfig()
  check_static(study)
  return study


def catalog_for(study: StudyConfig, *, log=print) -> Catalog:
  """Builds/reuses the study's world and joined stores; returns its Catalog."""
  from sftdiff.study import catalog
  return catalog.prepare(study, log=log).catalog


def import_configurables() -> None:
  """Everything a study gin file or its expansion binds or looks up; import
  before gin parses (gin locks its registry after a finalized parse)."""
  import sftdiff.data.train_data  # noqa: F401
  import sftdiff.eval.benchmarks  # noqa: F401
  import sftdiff.toyworld  # noqa: F401


__all__ = ["ArmDef", "Catalog", "RunSpec", "StudyConfig", "StudyConfigError",
           "arm_defs", "catalog_for", "check_static", "expand", "load_study",
           "validate"]
