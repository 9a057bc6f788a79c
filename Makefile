# redisops: `make demo` to try it, `make test` to run the whole suite. Works on a fresh Debian
# machine with Python 3.10+; installs what is missing (Debian packages need root or sudo).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LAB_DIR ?= .lab
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN_PACKAGES := redis-server redis-sentinel redis-tools openssh-server chromium

.PHONY: demo test lint bench system-deps venv lab-down clean

demo: venv
	$(BIN)/redisops lab up --dir $(LAB_DIR) --seed 1000
	$(BIN)/redisops -i $(LAB_DIR)/inventory.yaml inventory check
	@echo
	@echo "redisops is installed in $(VENV). Call it as $(BIN)/redisops, or first run"
	@echo "  . $(BIN)/activate"
	@echo "and then: redisops -i $(LAB_DIR)/inventory.yaml memory summary"

test: venv
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv
	$(BIN)/python bench/help_startup.py
	$(BIN)/python bench/check_fanout.py
	$(BIN)/python bench/memory_report.py
	$(BIN)/python bench/memory_rdb.py
	$(BIN)/python bench/slowlog_digest.py
	$(BIN)/python bench/backup_rdb.py
	$(BIN)/python bench/snapshot_take.py
	$(BIN)/python bench/restore_keys.py
	$(BIN)/python bench/cluster_status.py
	$(BIN)/python bench/cluster_memory_report.py
	$(BIN)/python bench/cluster_drill.py
	$(BIN)/python bench/cluster_reshard.py

lab-down:
	$(BIN)/redisops lab down --dir $(LAB_DIR)

# Debian packages, only when something is missing (a no-op on a prepared machine).
system-deps:
	@missing=""; \
	for tool in redis-server redis-sentinel redis-cli /usr/sbin/sshd ssh-keygen chromium; do \
	  command -v $$tool >/dev/null 2>&1 || missing=yes; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing=yes; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $(DEBIAN_PACKAGES) python3-venv"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    $(DEBIAN_PACKAGES) python3-venv >/dev/null; \
	fi

$(BIN)/redisops: pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: system-deps $(BIN)/redisops

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
