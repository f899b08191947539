# shellcheck shell=bash
# Shared by scripts/test and scripts/demo (sourced, not run): find what the build and the
# tests need, install what is missing with apt-get when root, and say what to install when not.
#
# Usage:  source scripts/lib.sh; ensure_tools cmake nginx promtool venv

# The repository root, whatever directory the calling script was started from.
# shellcheck disable=SC2034 # used by the scripts that source this file
HANDOFF_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

# Where the tests find nginx: Debian's package puts it in /usr/sbin, which a non-root PATH
# often lacks, so the tests are told the path rather than left to search.
: "${HANDOFF_NGINX:=/usr/sbin/nginx}"

# Set once `apt-get update` has run, so one script run updates the lists at most once.
_handoff_apt_updated=0

# banner TEXT: a visible header for each step, so a failing step is easy to find in a CI log.
banner() {
  printf '\n==> %s\n' "$*"
}

# have_tool TOOL: whether TOOL is usable right now.
have_tool() {
  case "$1" in
    # pingora builds zlib-ng with cmake (libz-ng-sys).
    cmake) command -v cmake >/dev/null 2>&1 ;;
    # The end-to-end tests start their own nginx instances on loopback ports.
    nginx) [[ -x "$HANDOFF_NGINX" ]] ;;
    # Checks and unit-tests deploy/prometheus/alerts.yml.
    promtool) command -v promtool >/dev/null 2>&1 ;;
    # Debian's python3 leaves `ensurepip` (and so `python3 -m venv`) to python3-venv.
    venv) python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ;;
    php-fpm) compgen -G '/usr/sbin/php-fpm*' >/dev/null ;;
    node) command -v node >/dev/null 2>&1 ;;
    chromium) command -v chromium >/dev/null 2>&1 ;;
    # `systemd-analyze verify` checks deploy/systemd/handoff.service (deploy_files.rs).
    systemd-analyze) [[ -x /usr/bin/systemd-analyze ]] ;;
    haproxy) command -v haproxy >/dev/null 2>&1 ;;
    wrk) command -v wrk >/dev/null 2>&1 ;;
    valgrind) command -v valgrind >/dev/null 2>&1 && command -v callgrind_control >/dev/null 2>&1 ;;
    # proxy/tests/doctor.rs watches `handoff doctor`'s file calls: it must write nothing.
    strace) command -v strace >/dev/null 2>&1 ;;
    *)
      echo "have_tool: unknown tool '$1'" >&2
      return 2
      ;;
  esac
}

# package_for TOOL: the Debian package that provides TOOL.
package_for() {
  case "$1" in
    cmake) echo cmake ;;
    nginx) echo nginx ;;
    # Debian ships promtool in the prometheus package (there is no separate one).
    promtool) echo prometheus ;;
    venv) echo python3-venv ;;
    php-fpm) echo php-fpm ;;
    node) echo nodejs ;;
    chromium) echo chromium ;;
    systemd-analyze) echo systemd ;;
    haproxy) echo haproxy ;;
    wrk) echo wrk ;;
    valgrind) echo valgrind ;;
    strace) echo strace ;;
  esac
}

# ensure_tools TOOL...: install the packages for every TOOL that is missing, in one apt-get
# run. Not root: print the command to run and exit 1.
ensure_tools() {
  local tool
  local -a missing=()
  for tool in "$@"; do
    have_tool "$tool" || missing+=("$(package_for "$tool")")
  done
  ((${#missing[@]} == 0)) && return 0

  if [[ $(id -u) -ne 0 ]]; then
    echo "missing: ${missing[*]}" >&2
    echo "install with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    echo "(or run this script as root, and it installs them itself)" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]}; this is not a Debian-like system, install them by hand" >&2
    exit 1
  fi
  apt_install "${missing[@]}"

  for tool in "$@"; do
    if ! have_tool "$tool"; then
      echo "still missing after apt-get install: $tool" >&2
      exit 1
    fi
  done
}

# apt_install PACKAGE...: install without starting the packages' services.
#
# nginx's and prometheus's maintainer scripts start their system services (nginx on port 80).
# The tests start their own nginx on free loopback ports and only need prometheus's promtool,
# so a policy-rc.d that answers 101 ("action forbidden") keeps them from starting, and under
# systemd the units are then disabled too, so a reboot does not start them either.
apt_install() {
  local policy=/usr/sbin/policy-rc.d own_policy=0 status=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from handoff scripts/lib.sh: start no services\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=1
  fi

  banner "apt-get install $*"
  if ((_handoff_apt_updated == 0)); then
    apt-get update -qq || status=$?
    _handoff_apt_updated=1
  fi
  if ((status == 0)); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" || status=$?
  fi

  ((own_policy == 1)) && rm -f "$policy"
  if ((status != 0)); then
    echo "apt-get failed (exit $status) installing: $*" >&2
    exit 1
  fi
  stop_services "$@"
}

# stop_services PACKAGE...: make sure the services that came with the packages are neither
# running nor enabled. Only the units of packages this run installed are touched.
stop_services() {
  local pkg
  for pkg in "$@"; do
    case "$pkg" in
      nginx | prometheus | php-fpm | haproxy) ;;
      *) continue ;;
    esac
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now "$pkg.service" >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null 2>&1 && [[ -e /etc/init.d/$pkg ]]; then
      update-rc.d "$pkg" disable >/dev/null 2>&1 || true
    fi
  done
}

# ensure_venv DIR PACKAGE...: a Python virtual environment at DIR with the PyPI packages
# given, each installed only when its command is missing from DIR/bin.
ensure_venv() {
  local dir=$1 pkg
  shift
  local -a wanted=()
  for pkg in "$@"; do
    [[ -x $dir/bin/$pkg ]] || wanted+=("$pkg")
  done
  ((${#wanted[@]} == 0)) && return 0

  ensure_tools venv
  banner "python venv $dir: pip install ${wanted[*]}"
  if [[ ! -x $dir/bin/python ]]; then
    # A half-made venv (python3-venv was missing last time) would fail again: start over.
    rm -rf -- "$dir"
    python3 -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "${wanted[@]}"
}

# elapsed: the time since the calling script started, as "3m07s".
elapsed() {
  printf '%dm%02ds' $((SECONDS / 60)) $((SECONDS % 60))
}
