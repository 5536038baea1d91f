#!/usr/bin/env bash
# The README's first command, until `edgewarden demo` lands: set up the machine, import the
# sample inventory into the embedded SQLite database and serve the API on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/bin:$HOME/.local/bin:$PATH"

bash scripts/setup.sh
mkdir -p var
if [ -z "${EDGEWARDEN_SECRET_KEY:-}" ]; then
    # A local key for this checkout; production keeps its key in the environment (deploy/).
    [ -s var/secret.key ] || (umask 077 && uv run --frozen edgewarden secret-key > var/secret.key)
    EDGEWARDEN_SECRET_KEY=$(cat var/secret.key)
    export EDGEWARDEN_SECRET_KEY
fi
uv run --frozen edgewarden db upgrade
uv run --frozen edgewarden inventory import lab/sample/inventory.yaml
echo "a city_admin token for the API (Authorization: Bearer ...):"
uv run --frozen edgewarden token create --role city_admin | tail -n 1
exec uv run --frozen edgewarden serve "$@"
