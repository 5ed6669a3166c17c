#!/usr/bin/env bash
# Benchmark: the promoter against crane and regsync on the same promotion
# jobs, on local CNCF Distribution registries behind counting proxies.
# Needs only Go and the Go module proxy. See docs/benchmarks.md.
#
#   bench/run.sh                  full run (W1, W2, W3; 3 repetitions)
#   bench/run.sh --quick          sanity run (W1 only, 1 repetition)
#   bench/run.sh --promoter-ref HEAD ...   benchmark the promoter of a git revision
#   bench/run.sh --promoter-bin PATH ...   benchmark a promoter binary built elsewhere
#
# Every other argument goes to the Go harness (bench/cmd/bench); run
# `bench/run.sh --help` for its flags (-workloads, -scenarios, -reps, -jobs,
# -tools, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
bin="$root/bench/.bin"
mkdir -p "$bin"

# Pinned peers and registry. Installed with `go install` into bench/.bin
# (gitignored), never into the user's GOBIN.
tools=(
	"crane github.com/google/go-containerregistry/cmd/crane github.com/google/go-containerregistry v0.22.1"
	"regsync github.com/regclient/regclient/cmd/regsync github.com/regclient/regclient v0.11.7"
	"registry github.com/distribution/distribution/v3/cmd/registry github.com/distribution/distribution/v3 v3.0.0"
)

case " $* " in
*" -h "* | *" -help "* | *" --help "*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
	echo "Harness flags:"
	exec go run ./bench/cmd/bench -help
	;;
esac

promoter_ref=""
promoter_bin=""
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--promoter-ref) promoter_ref="$2"; shift 2 ;;
	--promoter-ref=*) promoter_ref="${1#*=}"; shift ;;
	--promoter-bin) promoter_bin="$2"; shift 2 ;;
	--promoter-bin=*) promoter_bin="${1#*=}"; shift ;;
	*) args+=("$1"); shift ;;
	esac
done

# installed NAME MODULE VERSION: is bench/.bin/NAME built from MODULE@VERSION?
installed() {
	[ -x "$bin/$1" ] && go version -m "$bin/$1" 2>/dev/null | awk -v m="$2" -v v="$3" '$1 == "mod" && $2 == m && $3 == v { found = 1 } END { exit !found }'
}

for t in "${tools[@]}"; do
	read -r name pkg module version <<<"$t"
	if installed "$name" "$module" "$version"; then
		continue
	fi
	echo "bench: installing $pkg@$version" >&2
	# Outside any module or workspace, so that this repository's go.mod
	# cannot influence the tool's build.
	tmp="$(mktemp -d)"
	(cd "$tmp" && GOBIN="$bin" GOWORK=off GOFLAGS= go install "$pkg@$version")
	rmdir "$tmp"
	installed "$name" "$module" "$version" || { echo "bench: $bin/$name is not $module@$version" >&2; exit 1; }
done

if [ -n "$promoter_bin" ]; then
	desc="binary $promoter_bin"
elif [ -n "$promoter_ref" ]; then
	commit="$(git rev-parse --short "$promoter_ref^{commit}")"
	src="$(mktemp -d)"
	git archive "$commit" | tar -x -C "$src"
	echo "bench: building the promoter at $promoter_ref ($commit)" >&2
	(cd "$src" && go build -o "$bin/promoter" ./cmd/promoter) || { rm -rf "$src"; exit 1; }
	rm -rf "$src"
	promoter_bin="$bin/promoter"
	desc="git revision $promoter_ref ($commit)"
else
	echo "bench: building the promoter from the working tree" >&2
	go build -o "$bin/promoter" ./cmd/promoter
	promoter_bin="$bin/promoter"
	desc=""
fi

exec go run ./bench/cmd/bench -bin "$bin" -promoter "$promoter_bin" ${desc:+-promoter-desc "$desc"} ${args[@]+"${args[@]}"}
