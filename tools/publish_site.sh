#!/usr/bin/env bash
# Publish the course as a site (issue 29): execute the lessons in the cpu profile, then render that run.
#
#   bash tools/publish_site.sh            # run in runs/site, site in runs/site/html (open runs/site/html/index.html)
#   bash tools/publish_site.sh RUN_DIR    # another run folder; the site goes to RUN_DIR/html
#
# The same two commands work on a laptop and in the hosted job (.github/workflows/site.yml). `tlcourse run` skips the
# lessons whose content and parameters have not changed since the last run in the same folder, so a rerun after
# editing one lesson executes only that one. Needs the course with its site extra: pip install -e ".[site]".
# A lesson that fails stops the job before anything is rendered: a site never shows a broken run as the course.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/site}
python -m tlcourse run lessons --profile cpu --out "$RUN"
python -m tlcourse site "$RUN" --out "$RUN/html"
