#!/usr/bin/env bash
# Build the virtual environment of the MONAI Label server for the monai-textseg bundles: MONAI Label 0.8.5 and this
# repository's package (monai_ext, editable), apart from the environment you train in (MONAI Label needs pydicom 2 and
# numpy<2). From the repository root:
#
#     bash scripts/install_monailabel.sh .venv-monailabel
#     source .venv-monailabel/bin/activate   # the `monailabel` command runs the first `python` on the PATH
#
# monailabel itself is installed without its requirements, then this package with the `monailabel` extra of setup.cfg:
# MONAI Label's requirements without SAM2 (an sdist built against torch, for SAM2 models this app does not serve).
# torch comes from the index pip is set up with. Running it again on an existing folder updates it. PYTHON names the
# interpreter that makes the environment (default: python3).
set -euo pipefail
VENV=${1:?usage: bash scripts/install_monailabel.sh VENV_DIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --progress-bar off --disable-pip-version-check)
"${PIP[@]}" --no-deps "monailabel==0.8.5"
"${PIP[@]}" -e "$REPO[monailabel]"
# the server, the app's tasks and this package import: fails here, not at the first request
"$VENV/bin/python" -c "import monailabel.main, monailabel.tasks.infer.bundle, monailabel.tasks.train.bundle, monai_ext"
echo "MONAI Label environment ready: $VENV ($("$VENV/bin/python" -c 'import monailabel; print(monailabel.__version__)'))"
