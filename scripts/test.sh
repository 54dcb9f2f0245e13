#!/usr/bin/env bash
# Installs what the build needs, builds, fetches the default model (tests on it skip, saying so,
# when MPQ_SKIP_MODEL=1) and runs every test through CTest. Exits non-zero when a test fails.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mpq_install_packages
mpq_build
if [ "${MPQ_SKIP_MODEL:-0}" != 1 ]; then mpq_fetch_default_model; fi
cd "$MPQ_BUILD"
ctest --output-on-failure -j"$(nproc)" --timeout 900
