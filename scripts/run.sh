#!/usr/bin/env bash
# make run: a broker on the built-in default (local master key) under ./.run, in the foreground.
set -euo pipefail
bin_dir=$1
run_dir=$2
mkdir -p "$run_dir"
chmod 700 "$run_dir"
user=$(id -un)
if [ ! -f "$run_dir/master.key" ]; then
  "$bin_dir/keybrokerctl" init-local --master-key "$run_dir/master.key"
fi
if [ ! -f "$run_dir/keybroker.toml" ]; then
  clients="\"$user\""
  getent passwd mysql >/dev/null && clients="$clients, \"mysql\""
  cat > "$run_dir/keybroker.toml" <<TOML
# Written by 'make run' for trying keybroker out; see etc/keybroker.toml.example for every setting.
socket = "$run_dir/keybroker.sock"
state_dir = "$run_dir/state"
log_level = "info"
admins = ["$user"]

[instances.default]
provider = "local"
clients = [$clients]
master_key_file = "$run_dir/master.key"
TOML
fi
rel_bin=$(realpath -s --relative-to="$PWD" "$bin_dir")
rel_sock=$(realpath -s --relative-to="$PWD" "$run_dir")/keybroker.sock
echo "keybroker: starting keybrokerd on $run_dir/keybroker.sock (Ctrl-C stops it). In another terminal try:"
echo "  $rel_bin/keybrokerctl --socket $rel_sock latest 1"
echo
exec "$bin_dir/keybrokerd" --config "$run_dir/keybroker.toml"
