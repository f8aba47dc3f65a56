#!/usr/bin/env bash
# Prints the path of a working Python 3.13 (LocalStack 2026.3.0 needs exactly 3.13), or nothing.
# A pyenv shim may exist without the version behind it, so each candidate is run, not just found.
for p in "$HOME"/.pyenv/versions/3.13*/bin/python3.13 /usr/bin/python3.13 /usr/local/bin/python3.13 \
         "$(command -v python3.13 2>/dev/null)"; do
  if [[ -x $p ]] && "$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
    echo "$p"
    exit 0
  fi
done
