#!/usr/bin/env bash
# scripts/install-deps.sh GROUP...: make sure the Debian packages a command
# needs are installed. Groups:
#   build     what compiling tidemill needs (C compiler, pkg-config, OpenSSL
#             and zlib headers for librdkafka): make build, make demo
#   services  the test bed: Kafka's jars via Maven (Java comes with it),
#             kcat, PostgreSQL, MariaDB, openssl, Chromium (the status page's
#             browser test): make services-up / make test
#   tools     make docker-check / deploy-check / bench's chart: Python, fonts
#   all       every group (.ci/run)
# Installed packages are left alone, so a second run costs a dpkg query.
# Missing ones are installed with apt-get as root, or with `sudo -n`; when
# neither can, it prints the one command to run and fails.
set -euo pipefail

declare -A GROUPS_OF=(
    [build]="build-essential pkg-config libssl-dev zlib1g-dev"
    [services]="maven kcat sqlite3 postgresql postgresql-client mariadb-server mariadb-client openssl ca-certificates procps util-linux chromium"
    [tools]="python3 python3-yaml python3-venv fonts-dejavu-core"
)

wanted=()
for group in "${@:-all}"; do
    case $group in
        all) wanted+=(${GROUPS_OF[build]} ${GROUPS_OF[services]} ${GROUPS_OF[tools]}) ;;
        build | services | tools) wanted+=(${GROUPS_OF[$group]}) ;;
        *) echo "install-deps: unknown group '$group' (build, services, tools, all)" >&2; exit 2 ;;
    esac
done

missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi

command -v apt-get >/dev/null || {
    echo "install-deps: missing ${missing[*]}, and this is not a Debian-like system: install them by hand" >&2
    exit 1
}
sudo=()
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "install-deps: missing packages; run this once, then try again:" >&2
        echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# The packages' postinst scripts try to start their default services via
# invoke-rc.d; a policy-rc.d may deny that, which is fine: the test bed runs
# its own instances.
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" </dev/null
