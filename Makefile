# The template's commands. README.md gives two: `make demo` and `make test`.
PYTHON ?= python3
UV_VERSION := 0.13.8
# A working uv on PATH, else the copy pip installs into $(PYTHON) (found whatever PATH says;
# a pyenv shim for another Python version is on PATH but fails, hence the --version probe).
UV ?= $(shell uv --version >/dev/null 2>&1 && echo uv || echo "$(PYTHON) -m uv")
RUN := $(UV) run --locked
DEMO_DIR := build/demo

.PHONY: demo test relock uv

demo: uv ## render the default answers into build/demo/, then `make setup demo` there
	rm -rf $(DEMO_DIR)
	$(RUN) cookiecutter --no-input --default-config --output-dir $(DEMO_DIR) .
	$(MAKE) -C "$$(ls -d $(DEMO_DIR)/*/)" UV="$(UV)" setup demo

test: uv ## lint and type-check the template tooling, then every test tier
	$(RUN) ruff check hooks scripts tests
	$(RUN) ruff format --check hooks scripts tests
	$(RUN) mypy
	$(RUN) pytest

relock: uv ## regenerate {{cookiecutter.project_slug}}/.locks/ after changing its pyproject.toml
	$(RUN) python scripts/relock.py

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
