r"""`python -m sftdiff.data <command>`: build and inspect data for arms.

Commands (all take `--gin_file=` / `--gin.NAME=VALUE`; data comes from the
`train_data.DataConfig` bindings, e.g. `--gin_file=data/example.gin`):

  build     build (or reuse) the joined store; print coverage and skip counts
  arms      print the manifest of the arm bound to `ARM` and/or of each arm in
            the `ARMS` dict macro ({name: spec}); `--standard_filter=F
            --teacher=T --alt=A` adds the four standard arms for filter F and
            `--subset_sweep` the per-subset patch-in arms. Nothing is trained.
            `--tokenizer_dir` adds trainable-token fractions; `--output_dir`
            writes `<output_dir>/<name>/manifest.json`.
  overlaps  filter counts, Jaccard matrix and coverage (`--filters=a,b,...`)
  preview   N formatted training examples of `ARM` with the loss mask visible:
            trained tokens are shown [[in double brackets]] (and green on a tty)

Teacher rollouts moved next to the sampler: `python -m sftdiff.eval rollouts`.

Example:
  python -m sftdiff.data arms --gin_file=data/example.gin \
      --gin_file=arms/patch_in_date_mentions.gin --gin.DATA_DIR="'/tmp/ex'"
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags
import gin

from sftdiff import gin_utils

COMMANDS = ("build", "arms", "overlaps", "preview")
# Commands that now live elsewhere: the old spelling exits 2 with a pointer.
MOVED = {"rollouts": "python -m sftdiff.eval rollouts"}

_FORCE = flags.DEFINE_bool("force", False, "build: rebuild even if cached.")
_TOKENIZER_DIR = flags.DEFINE_string(
    "tokenizer_dir", None, "Directory with tokenizer.json + tokenizer_config.json "
    "(needed by preview; optional for arms).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "arms: write <dir>/<name>/manifest.json.")
_STANDARD_FILTER = flags.DEFINE_string(
    "standard_filter", None, "arms: add patch-in/out, drop, random for this filter.")
_SUBSET_SWEEP = flags.DEFINE_bool("subset_sweep", False,
                                  "arms: add per-subset patch-in arms.")
_TEACHER = flags.DEFINE_string("teacher", None, "arms: teacher source name.")
_ALT = flags.DEFINE_string("alt", None, "arms: alternative source name.")
_SEED = flags.DEFINE_integer("seed", 0, "arms: seed of the matched random arm.")
_FILTERS = flags.DEFINE_list("filters", None, "overlaps: filters to compare "
                             "(default: stored filters, refusal, subset:*).")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 3, "preview: examples shown.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", None, "preview/arms: max tokens per "
                                "example (over-long ones are truncated).")


def _optional_macro(name: str):
  try:
    return gin.query_parameter(f"%{name}")
  except ValueError:
    return None


def _data_config():
  from sftdiff.data import train_data
  return train_data.DataConfig()


def _tokenizer(required: bool):
  if not _TOKENIZER_DIR.value:
    if required:
      raise gin_utils.GinConfigError("--tokenizer_dir is required for this command")
    return None
  from sftdiff.data import tokenizer
  return tokenizer.load_tokenizer(_TOKENIZER_DIR.value)  # gin: chat_tokenizer.*


def _declared_arms(data) -> dict[str, str]:
  """name -> spec from ARM, ARMS and the family flags (checked, no data read)."""
  from sftdiff.data import arms
  declared: dict[str, str] = {}
  arm = _optional_macro("ARM")
  if arm is not None:
    declared[str(_optional_macro("ARM_NAME") or "ARM")] = arm
  for name, spec in (_optional_macro("ARMS") or {}).items():
    declared[name] = spec
  if not declared and not (_STANDARD_FILTER.value or _SUBSET_SWEEP.value):
    raise gin_utils.GinConfigError(
        "no arms declared: bind ARM (a spec string) or ARMS ({name: spec}) in a "
        "gin file, or pass --standard_filter / --subset_sweep")
  for name, spec in declared.items():
    try:
      data.check_arm(spec)
    except arms.ArmError as e:
      raise arms.ArmError(f"arm {name!r}: {e}") from e
  return declared


def cmd_build() -> None:
  from sftdiff.data import store as store_lib
  store = _data_config().build(force=_FORCE.value)
  print(store_lib.coverage_summary(store))


def cmd_arms() -> None:
  from sftdiff.data import arms
  from sftdiff.data import manifest as manifest_lib
  data = _data_config()
  declared: dict[str, arms.ArmLike] = dict(_declared_arms(data))
  if (_STANDARD_FILTER.value or _SUBSET_SWEEP.value) and not (
      _TEACHER.value and _ALT.value):
    raise gin_utils.GinConfigError("--standard_filter/--subset_sweep need "
                                   "--teacher and --alt")
  tokenizer = _tokenizer(required=False)
  store = data.build()
  cols = store.selection_columns()
  if _STANDARD_FILTER.value:
    declared.update(arms.standard_filter_arms(
        _STANDARD_FILTER.value, _TEACHER.value, _ALT.value, _SEED.value, cols,
        store.sources))
  if _SUBSET_SWEEP.value:
    declared.update(arms.subset_sweep(store.subsets, _TEACHER.value, _ALT.value))
  for name, spec in declared.items():
    try:
      arm = arms.check_arm(spec, sources=store.sources, filters=store.filters,
                           subsets=store.subsets)
      chosen = arms.select_checked(arm, cols, store.sources)
    except arms.ArmError as e:
      raise arms.ArmError(f"arm {name!r}: {e}") from e
    m = manifest_lib.build_manifest(arm, store, chosen, arm_name=name,
                                    tokenizer=tokenizer, max_len=_SEQ_LEN.value)
    if _OUTPUT_DIR.value:
      manifest_lib.write_manifest(os.path.join(_OUTPUT_DIR.value, name), m)
    print(json.dumps({name: m}, indent=1, sort_keys=True))


def cmd_overlaps() -> None:
  from sftdiff.data import filters
  store = _data_config().build()
  names = _FILTERS.value or (store.filters + ["refusal"] +
                             [f"subset:{s}" for s in store.subsets])
  for n in names:
    filters.check_name(n, sources=store.sources, stored=store.filters,
                       subsets=store.subsets)
  report = filters.overlap_report(store.selection_columns(), names, store.sources)
  print(filters.format_overlap_report(report))


def format_masked(tokenizer, ids, mask, color: bool) -> str:
  """Decodes ids, wrapping each trained run in [[...]] (green if `color`)."""
  out, run, trained = [], [], None
  def close():
    if run:
      text = tokenizer.decode(run, skip_special_tokens=False)
      if trained:
        text = f"\033[32m[[{text}]]\033[0m" if color else f"[[{text}]]"
      out.append(text)
  for tid, m in zip(ids, mask):
    if trained is not None and bool(m) != trained:
      close()
      run = []
    trained = bool(m)
    run.append(int(tid))
  close()
  return "".join(out)


def cmd_preview() -> None:
  from sftdiff.data import arms, manifest as manifest_lib, pipeline, train_data
  arm_spec = _optional_macro("ARM")
  if arm_spec is None:
    raise gin_utils.GinConfigError("preview needs the ARM macro (--gin.ARM=\"'alt'\")")
  tokenizer = _tokenizer(required=True)
  arm, store, chosen = train_data.select_arm(_data_config(), arm_spec)
  picked = [i for i in range(len(chosen)) if chosen[i] != arms.DROP]
  color = sys.stdout.isatty()
  print(f"arm {arm}: {len(picked)} of {len(chosen)} prompts selected")
  for i, record in zip(picked[:_NUM_EXAMPLES.value],
                       store.read(picked[:_NUM_EXAMPLES.value])):
    src = store.sources[chosen[i]]
    # The same mask as training (the source's completion turns only).
    ex = pipeline.tokenize_record(
        tokenizer, manifest_lib.pipeline_record(record, src),
        max_len=_SEQ_LEN.value, overlong="truncate")
    print(f"\n=== {record['prompt_id']} (subset {record['subset']}, source {src}, "
          f"{len(ex)} tokens, {ex.num_trainable} trained"
          f"{', truncated' if ex.truncated else ''}) ===")
    print(format_masked(tokenizer, ex.ids, ex.mask, color))


def main(argv) -> None:
  if argv[1:2] and argv[1] in MOVED:
    raise gin_utils.GinConfigError(
        f"`python -m sftdiff.data {argv[1]}` moved: use `{MOVED[argv[1]]}` "
        "(same flags)")
  if len(argv) < 2 or argv[1] not in COMMANDS:
    raise gin_utils.GinConfigError(
        f"usage: python -m sftdiff.data {{{','.join(COMMANDS)}}} "
        "[--gin_file=...] [--gin.NAME=VALUE ...]")
  command = argv[1]
  if len(argv) > 2:
    raise gin_utils.GinConfigError(f"unexpected arguments: {argv[2:]}")
  # Registers DataConfig / make_train_data / chat_tokenizer with gin before
  # bindings are parsed.
  from sftdiff.data import tokenizer, train_data  # pylint: disable=unused-import
  gin_utils.parse_from_flags(known_macros=("ARM", "ARM_NAME", "ARMS"))
  # Data and arm errors (ArmError, DataValidationError, CoverageError, a
  # missing file, ...) exit 2 with their message (sftdiff.cli).
  {"build": cmd_build, "arms": cmd_arms, "overlaps": cmd_overlaps,
   "preview": cmd_preview}[command]()

if __name__ == "__main__":
  gin_utils.run(main)
