# Sourced by the tools that fetch from Debian (ftpython.sh, py315.sh): the address of the Debian
# archive this machine already uses, read from its own apt configuration at run time, so no
# archive host is ever written into the project.

# Prints the URI of the repository that serves the machine's own release codename (security
# and third-party repositories serve other suite names), else of one serving a Debian suite;
# prints nothing when apt knows no Debian archive.
debian_archive_uri() {
    local codename
    codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 2>/dev/null \
        | awk -v c="$codename" '
            $2 == c { print $1; found = 1; exit }
            $2 ~ /^(stable|testing|unstable|sid|bullseye|bookworm|trixie|forky)$/ && !alt { alt = $1 }
            END { if (!found && alt) print alt }'
}
