#!/bin/sh
# Install the Debian packages digestd needs for one purpose, idempotently
# (nothing is installed twice; with everything there, apt is not called),
# with sudo when not root.
#
# Usage: scripts/deps.sh [--list] [build|demo|unit|package|test|bench|all]
#   build    compile digestd and digestctl
#   demo     build + redis-server: what `make demo` runs on
#   unit     build + cmocka: `make unit`
#   package  build + dpkg-dev, debhelper, lintian: dpkg-buildpackage
#   test     everything `make check` needs: the above, and the servers and
#            tools of the functional suite (RabbitMQ, Prometheus, postfix,
#            clang for fuzzing, Node.js for the HCL parser...)
#   bench    test + the benchmarks' comparisons and plots
#   all      (the default) every package of every purpose
# --list prints the packages of the purpose, one a line, and installs
# nothing.
set -eu

BUILD_PKGS="build-essential pkg-config libevent-dev libhiredis-dev
librabbitmq-dev libesmtp-dev libbsd-dev libinih-dev libjansson-dev
libssl-dev libidn2-dev"

DEMO_PKGS="redis-server"

UNIT_PKGS="libcmocka-dev"

PACKAGE_PKGS="dpkg-dev debhelper lintian"

FUNCTIONAL_PKGS="chromium chromium-driver python3-selenium python3 python3-pytest python3-pytest-xdist python3-redis python3-pika
python3-aiosmtpd python3-prometheus-client prometheus prometheus-alertmanager
rabbitmq-server procps systemd man-db groff-base clang libclang-rt-14-dev
nutcracker haproxy prometheus-redis-exporter python3-yaml strace postfix"

# Benchmarks only: php-fpm to compare the supervisor with, gnuplot for the
# plot (postfix, for its smtp-sink and smtp-source, is a test package).
BENCH_PKGS="php-fpm gnuplot-nox prometheus-redis-exporter"

list=0
if [ "${1:-}" = "--list" ]; then
	list=1
	shift
fi

# Node.js runs the HCL2 parser of the deployment tests; a machine that has
# it from elsewhere keeps its own (Debian's npm conflicts with other builds).
if ! command -v npm >/dev/null 2>&1; then
	FUNCTIONAL_PKGS="$FUNCTIONAL_PKGS nodejs npm"
fi

TEST_PKGS="$BUILD_PKGS $DEMO_PKGS $UNIT_PKGS $PACKAGE_PKGS $FUNCTIONAL_PKGS"

what=${1:-all}
node=0
case "$what" in
build) pkgs=$BUILD_PKGS ;;
demo) pkgs="$BUILD_PKGS $DEMO_PKGS" ;;
unit) pkgs="$BUILD_PKGS $UNIT_PKGS" ;;
package) pkgs="$BUILD_PKGS $PACKAGE_PKGS" ;;
test) pkgs=$TEST_PKGS; node=1 ;;
bench|all) pkgs="$TEST_PKGS $BENCH_PKGS"; node=1 ;;
*) echo "usage: $0 [--list] [build|demo|unit|package|test|bench|all]" >&2
   exit 2 ;;
esac

if [ "$list" = 1 ]; then
	for p in $pkgs; do
		echo "$p"
	done | awk '!seen[$0]++'
	exit 0
fi

# @cdktf/hcl2json parses the Nomad job files in the tests; it goes to a
# node_modules under build/, never into git.
HCL2JSON_VERSION=0.21.0
node_deps() {
	root=$(cd "$(dirname "$0")/.." && pwd)
	dir="$root/build/node"
	if [ -f "$dir/node_modules/@cdktf/hcl2json/package.json" ] &&
	    grep -q "\"version\": \"$HCL2JSON_VERSION\"" \
	    "$dir/node_modules/@cdktf/hcl2json/package.json"; then
		return 0
	fi
	mkdir -p "$dir"
	echo "deps: npm install @cdktf/hcl2json@$HCL2JSON_VERSION" >&2
	npm install --no-save --no-audit --no-fund --prefix "$dir" \
	    "@cdktf/hcl2json@$HCL2JSON_VERSION" >&2
}

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	[ "$node" = 0 ] || node_deps
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Services installed here must not start on their own: the tests start their
# own instances on free ports.
policy_added=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod 755 /usr/sbin/policy-rc.d
	policy_added=1
fi
# The tests and benchmarks run private postfix instances of their own:
# the system's is left unconfigured.
echo "postfix postfix/main_mailer_type select No configuration" |
	$SUDO debconf-set-selections
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq || true
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
if [ "$policy_added" = 1 ]; then
	$SUDO rm -f /usr/sbin/policy-rc.d
fi
[ "$node" = 0 ] || node_deps
