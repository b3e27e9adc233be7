#!/bin/sh
# The node's install, one script for every place it is installed, so CI runs the image's steps too:
# `make install` (developers and CI) runs `dev` and `js`, the Dockerfile runs `runtime` and `js`.
#
#   scripts/install.sh dev      $VENV with requirements-dev.txt: runtime pins, test and lint tools,
#                               ./connext editable (its CLI as $VENV/bin/connext)
#   scripts/install.sh runtime  $VENV with requirements.txt and ./connext only: what the image ships
#   scripts/install.sh js       node_modules from package-lock.json (solc, OpenZeppelin, anvil, esbuild)
#
# VENV (default .venv) is the virtualenv, made with PYTHON_BOOT (default python3) when missing.
set -eu
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON_BOOT=${PYTHON_BOOT:-python3}

pip_install() {
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

python_env() {
	test -x "$VENV/bin/python" || "$PYTHON_BOOT" -m venv "$VENV"
	# One pip everywhere: the resolver and its messages are the same on every machine and in the image.
	pip_install --upgrade pip==26.3
}

case "${1:-}" in
dev)
	python_env
	pip_install -r requirements-dev.txt
	;;
runtime)
	python_env
	# Wheels only: the image has no compiler, so a package without a wheel must fail here, on the host too.
	pip_install --only-binary=:all: -r requirements.txt
	# Its dependencies are pinned in requirements.txt: nothing unpinned comes in with it.
	pip_install --no-deps ./connext
	# The setuptools a Python 3.11 venv starts with: nothing runs on it, and scanners flag its age.
	"$VENV/bin/python" -m pip uninstall --quiet --disable-pip-version-check --yes setuptools
	;;
js)
	npm ci --no-audit --no-fund --loglevel=error
	;;
*)
	echo "usage: $0 dev|runtime|js" >&2
	exit 2
	;;
esac
