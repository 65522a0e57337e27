#!/usr/bin/env bash
# Make sure this machine can make network namespaces, so that the tests marked `netns` (ranks
# on two test hosts talking across a real interface, in tests/test_mpi.py) run in `make test`:
# they need root and iproute2's `ip`. Where `ip` is missing and we are root on a Debian-like
# machine, install iproute2 with apt-get, which reads the machine's own apt configuration (no
# archive is named here). `make test` runs this before its passes.
#
# Exit status: 0 when `ip netns add` works here (the tests will run); 3 when network namespaces
# cannot be made on this machine (not root, no apt-get, iproute2 not installable, the kernel or
# container refuses), with the reason on stderr; 1 for any other failure.
#
#   --check   only probe, install nothing (what `make test` calls to print its closing line)

set -euo pipefail

die() {
    echo "netns: error: $*" >&2
    exit 1
}

# Not an error in the project: this machine cannot make network namespaces.
unavailable() {
    echo "netns: unavailable here: $*" >&2
    exit 3
}

say() {
    echo "netns: $*"
}

CHECK=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --check) CHECK=1; shift ;;
        -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1 (expected --check or --help)" ;;
    esac
done

# `ip` lives in /usr/sbin or /sbin, which a non-login PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

# Add and delete one namespace, as tests/conftest.py's probe does; prints why it failed.
probe() {
    local name=gilstudy-probe-$$ out
    if ! out=$(ip netns add "$name" 2>&1); then
        echo "$out"
        return 1
    fi
    ip netns delete "$name" >/dev/null 2>&1 || true
}

[[ $(id -u) -eq 0 ]] || unavailable "making network namespaces needs root; run make test as root"

if ! command -v ip >/dev/null; then
    [[ $CHECK -eq 0 ]] || unavailable "no ip command (iproute2 is not installed)"
    command -v apt-get >/dev/null \
        || unavailable "no ip command, and no apt-get to install iproute2 with (install iproute2 by hand)"
    say "installing iproute2 (for the tests marked netns)"
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    # From the package lists already here first; refresh them only when that fails.
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-upgrade iproute2 >"$log" 2>&1; then
        apt-get update >>"$log" 2>&1 || true
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-upgrade iproute2 >>"$log" 2>&1; then
            tail -3 "$log" >&2
            unavailable "apt-get could not install iproute2 (no network, or no archive in this machine's apt sources)"
        fi
    fi
    command -v ip >/dev/null || die "apt-get installed iproute2, but there is still no ip command"
fi

if ! why=$(probe); then
    unavailable "ip netns add failed: $why"
fi
say "network namespaces can be made here ($(command -v ip))"
