# The Python example publisher (examples/python) and the check that the shipped JSON
# Schemas, as Python reads them, judge commands as the worker does (issue 22).

# Debian's python3: python3-jsonschema installs for it, and a python3 earlier on PATH
# (pyenv's) may have another jsonschema or none.
PYTHON ?= /usr/bin/python3

.PHONY: check-python python-jsonschema
TEST_CHECKS += check-python

## check-python: every command of testdata/ (valid and invalid), and a sweep of the
## characters regex engines read differently in every field with a pattern, through
## the shipped schemas with Python's jsonschema, compared with the worker's own
## verdicts (go run ./internal/verdicts). -v with CHECK_PYTHON_FLAGS=-v.
CHECK_PYTHON_FLAGS ?=
check-python: python-jsonschema
	GO="$(GO)" $(PYTHON) examples/python/check_corpus.py $(CHECK_PYTHON_FLAGS)

## python-jsonschema: Debian's python3-jsonschema (4 or later: the schemas are Draft
## 2020-12) for PYTHON, installed with apt-get when missing, as root or through
## passwordless sudo (CI runs as root). Where it is missing and cannot be installed,
## this fails, saying what to install: check-python never passes without running.
JSONSCHEMA_OK := $(PYTHON) -c 'import jsonschema; jsonschema.Draft202012Validator' 2>/dev/null
python-jsonschema:
	@if ! $(JSONSCHEMA_OK); then \
		if [ "$$(id -u)" = 0 ]; then as=; \
		elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then as="sudo -n"; \
		else as=none; fi; \
		if [ "$$as" != none ] && command -v apt-get >/dev/null; then \
			echo "installing python3-jsonschema (Debian) for $(PYTHON)$${as:+ with $$as}"; \
			install="$$as env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends python3-jsonschema"; \
			$$install >/dev/null || { $$as apt-get update -q >/dev/null && $$install >/dev/null; }; \
		fi; \
		$(JSONSCHEMA_OK) || { \
			echo "check-python needs jsonschema 4 or later for $(PYTHON), and could not install it:" >&2; \
			echo "  apt-get install python3-jsonschema (as root), or make PYTHON=<a python3 that has it>" >&2; \
			exit 1; }; \
	fi
