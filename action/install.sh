#!/usr/bin/env bash
# Installs a released promoter binary for the runner's platform and checks
# its SHA-256 against the release's checksums file. Used by action.yml (the
# GitHub Action); it also works on its own:
#
#   PROMOTER_VERSION=v1.2.3 PROMOTER_INSTALL_DIR="$HOME/.local/bin" bash action/install.sh
#
# Environment:
#   PROMOTER_VERSION       the release tag, vX.Y.Z (required)
#   PROMOTER_INSTALL_DIR   where to put the binary (required)
#   PROMOTER_DOWNLOAD_URL  where the release assets are; default the project's
#                          GitHub releases. Tests point it at a local copy.
#   PROMOTER_OS, PROMOTER_ARCH  the platform (linux, darwin, windows; amd64,
#                          arm64); default the machine's.
set -euo pipefail

fail() { echo "promoter install: $*" >&2; exit 1; }

version="${PROMOTER_VERSION:-}"
dir="${PROMOTER_INSTALL_DIR:-}"
base="${PROMOTER_DOWNLOAD_URL:-https://github.com/imgpromoter/promoter/releases/download}"
[ -n "$dir" ] || fail "PROMOTER_INSTALL_DIR is not set"
# The tag goes into a URL and file names: accept a release tag only.
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]] ||
  fail "version \"$version\" is not a release tag like v1.2.3"

os="${PROMOTER_OS:-}"
if [ -z "$os" ]; then
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    MINGW* | MSYS* | CYGWIN* | Windows_NT) os=windows ;;
    *) fail "no release for the operating system $(uname -s)" ;;
  esac
fi
arch="${PROMOTER_ARCH:-}"
if [ -z "$arch" ]; then
  case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) fail "no release for the architecture $(uname -m)" ;;
  esac
fi

# The names GoReleaser gives the assets (.goreleaser.yaml): the version
# without its leading v.
v="${version#v}"
ext=tar.gz
exe=promoter
if [ "$os" = windows ]; then
  ext=zip
  exe=promoter.exe
fi
archive="promoter_${v}_${os}_${arch}.${ext}"
sums="promoter_${v}_checksums.txt"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

download() {
  curl --fail --silent --show-error --location --proto '=https,file' --retry 3 \
    --output "$tmp/$1" "$base/$version/$1" || fail "cannot download $base/$version/$1"
}
download "$sums"
download "$archive"

# The checksums file lists "SHA256  NAME" for every asset of the release.
want="$(awk -v f="$archive" '$2 == f { print $1 }' "$tmp/$sums")"
[ -n "$want" ] || fail "$sums does not list $archive"
if command -v sha256sum > /dev/null; then
  got="$(sha256sum "$tmp/$archive" | awk '{ print $1 }')"
else
  got="$(shasum -a 256 "$tmp/$archive" | awk '{ print $1 }')"
fi
[ "$got" = "$want" ] || fail "checksum mismatch for $archive: got $got, $sums says $want"

mkdir -p "$tmp/x" "$dir"
if [ "$ext" = zip ]; then
  unzip -q -o "$tmp/$archive" "$exe" -d "$tmp/x"
else
  tar -xzf "$tmp/$archive" -C "$tmp/x" "$exe"
fi
install -m 0755 "$tmp/x/$exe" "$dir/$exe" 2> /dev/null || { cp "$tmp/x/$exe" "$dir/$exe" && chmod 0755 "$dir/$exe"; }
echo "promoter $version ($os/$arch) installed in $dir, sha256 $got verified against $sums"
