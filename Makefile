# The two commands a newcomer runs: `make demo` and `make test`. Both start with an
# idempotent `make setup` (virtual environment in .venv/, pinned packages, GL libraries).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GL_PACKAGES := libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libxrender1
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)

.PHONY: setup demo test gl clean-venv

setup: gl $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

# Headless EGL rendering needs Mesa's EGL/GL libraries. Install them when missing and we
# are root; otherwise print the command.
gl:
	@if ldconfig -p | grep -q 'libEGL.so.1' && ldconfig -p | grep -q 'libGL.so.1' && ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then \
	  true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing OpenGL libraries for headless rendering: $(GL_PACKAGES)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(GL_PACKAGES) >/dev/null; \
	else \
	  echo "Headless rendering needs OpenGL libraries. Run:  sudo apt-get install -y $(GL_PACKAGES)"; \
	fi

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) tools/demo.py --out demo_output

clean-venv:
	rm -rf $(VENV)
