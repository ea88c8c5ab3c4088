#!/usr/bin/env bash
# Builds the documentation site offline and checks it in a headless browser.
#
#   pip install -e '.[docs]' && bash docs/build.sh
#
# Warnings are errors (broken references, missing API pages, a tutorial cell
# that raises). The site lands in docs/_build/html. The browser check needs
# Chromium and its driver (Debian: apt-get install chromium chromium-driver);
# CNNJAX_DOCS_SKIP_BROWSER=1 builds only.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m sphinx -W --keep-going -n -b html -j 1 docs docs/_build/html
if [[ "${CNNJAX_DOCS_SKIP_BROWSER:-0}" != "1" ]]; then
  CNNJAX_DOCS_HTML="$PWD/docs/_build/html" CNNJAX_REQUIRE_BROWSER=1 \
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/docs/test_site_browser.py
fi
