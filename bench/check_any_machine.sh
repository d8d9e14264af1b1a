#!/usr/bin/env bash
# Does the suite pass on a machine with many more documentation packages than ours? The test
# corpus includes Debian's changelogs and copyright files when /usr/share/doc holds them, so
# a machine with other packages gives the tests other text. This script installs a few dozen
# documentation-heavy Debian packages and runs CI's checks from a fresh clone of this checkout.
#
# It changes the machine it runs on (apt-get install as root): run it on a scratch machine or
# in a throwaway container, never on a workstation you care about. Not run by CI.
#
#     bash bench/check_any_machine.sh --yes
set -euo pipefail

if [ "${1:-}" != "--yes" ]; then
  echo "usage: $0 --yes   (installs Debian packages on this machine; use a scratch machine)" >&2
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "$0: needs root (apt-get install)" >&2
  exit 2
fi

PACKAGES=(
  bash-doc info python3-doc debian-reference-en debian-handbook developers-reference maint-guide
  debian-policy debian-faq doc-debian sqlite3-doc git-doc perl-doc zsh-doc tcl-doc tk-doc rsync
  tree units dc lynx w3m texinfo groff vim-doc nano mc htop screen lua5.4 gawk autoconf-doc
  flex-doc m4-doc binutils-doc glibc-doc postgresql-doc-15 nginx-doc apache2-doc diffutils-doc
  wdiff gettext-doc readline-doc ncurses-doc
)

repo=$(cd "$(dirname "$0")/.." && pwd)
before=$(find /usr/share/doc -mindepth 1 -maxdepth 1 -type d | wc -l)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
after=$(find /usr/share/doc -mindepth 1 -maxdepth 1 -type d | wc -l)
echo "/usr/share/doc: ${before} -> ${after} package folders (${#PACKAGES[@]} packages asked for)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/curate"
if [ -d "$repo/../shared" ]; then
  ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"
fi
cd "$work/curate"
CI=true bash .ci/run
echo "check_any_machine: the suite passed with ${after} documentation folders under /usr/share/doc"
