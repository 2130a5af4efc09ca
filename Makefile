# The two commands of the README. Each creates .venv and installs on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo validate clean-venv

$(STAMP): setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup --durations=15 tests

demo: $(STAMP)
	$(PY) -m sftdiff.study --gin_file=studies/toyworld_quick.gin --gin.STUDY_DIR="'runs/demo'"

# Every toyworld scenario (docs/toyworld.md "Scenarios") at the quick size, 3
# seeds (virulent 6: its partial carriers' seed variance needs them, by the
# power planner), both per-subset sweep directions, into one matrix:
# runs/validate/matrix.md (docs/study.md "Validation").
validate: $(STAMP)
	$(PY) -m sftdiff.study.validation --out=runs/validate --seeds=0,1,2 --size=quick \
	    "--scenario_binding=virulent:StudyConfig.seeds = [0, 1, 2, 3, 4, 5]" -- \
	    "--gin_bindings=StudyConfig.sweep_directions = ['teacher_on_subset', 'alt_on_subset']"

clean-venv:
	rm -rf $(VENV)
