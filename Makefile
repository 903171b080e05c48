# Two set-up commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
TESTSTAMP := $(VENV)/.installed-test

# Debian packages of the real peers the tests talk to (../shared/INTEROP.md) plus
# espeak-ng/sox (prompt generation checks) and Chromium (rendered reports).
DEB_PEERS := sip-tester baresip-core kamailio kamailio-tls-modules rtpengine-daemon \
             tshark iproute2 espeak-ng sox chromium chromium-driver openssl

.PHONY: run test install install-test deb-peers bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(VENV)/bin/python pyproject.toml setup.py $(wildcard native/*.c native/*.h)
	$(PIP) install -q -e .
	touch $@

$(TESTSTAMP): $(STAMP)
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(STAMP)

install-test: $(TESTSTAMP)

run: $(STAMP)
	$(VENV)/bin/vtcgw serve --data-dir ./var

deb-peers:
	@if [ "$$(id -u)" = "0" ]; then \
	  missing=""; for p in $(DEB_PEERS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian peers:$$missing"; \
	    apt-get update -q && \
	    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  fi; \
	else echo "not root: skipping Debian peer install; peer tests fail if peers are absent"; fi

test: deb-peers $(TESTSTAMP)
	$(PY) -m pytest

lint: $(TESTSTAMP)
	$(VENV)/bin/ruff check gateway probes benchmarks tests
	$(VENV)/bin/mypy --follow-imports=silent gateway/calls.py gateway/rtp/ports.py gateway/meetings/keypad.py gateway/meetings/control.py

bench: deb-peers $(TESTSTAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info
