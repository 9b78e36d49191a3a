#!/usr/bin/env bash
# make shell-deps: installs zsh and fish from Debian's packages (apt-get) for
# the test that runs `credbroker completion zsh|fish` in those shells
# (e2e/bindings/completion_test.go). Does nothing when both are in place.
set -euo pipefail

if command -v zsh >/dev/null && command -v fish >/dev/null; then
  exit 0
fi
echo "shell-deps: installing zsh and fish from Debian's packages"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends zsh fish >/dev/null
