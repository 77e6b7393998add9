#!/usr/bin/env bash
# `make demo`: a throw-away keybrokerd (local provider) and mariadbd (own datadir under .run/demo,
# no network) with keybroker_key_management; an encrypted table, its encryption status, the
# plugin's status, proof that its plaintext is not on disk; then everything stops.
set -euo pipefail

bin_dir=$(realpath "${1:-.build/debug}")
plugin_dir=$(realpath "${2:-build/plugin}")
demo=${3:-.run/demo}
user=$(id -un)
secret="TOP-SECRET launch code 0451"

for f in "$bin_dir/keybrokerd" "$bin_dir/keybrokerctl" "$plugin_dir/keybroker_key_management.so"; do
  [ -e "$f" ] || { echo "demo: $f is missing; run make build" >&2; exit 1; }
done
rm -rf "$demo"
mkdir -p "$demo"
demo=$(realpath "$demo")
datadir=$demo/data
sock=$demo/mysqld.sock
mysql=(mariadb --no-defaults --socket="$sock" --user="$user" --table)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

broker_pid= mariadbd_pid=
stop_all() {
  if [ -n "$mariadbd_pid" ] && kill -0 "$mariadbd_pid" 2>/dev/null; then
    kill -TERM "$mariadbd_pid"; wait "$mariadbd_pid" || true
  fi
  if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid"; wait "$broker_pid" || true
  fi
}
trap stop_all EXIT

wait_for_socket() {  # path, pid, log
  for _ in $(seq 300); do
    [ -S "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { echo "demo: process exited; its log:" >&2; cat "$3" >&2; exit 1; }
    sleep 0.1
  done
  echo "demo: $1 did not appear; log:" >&2; cat "$3" >&2; exit 1
}

step "1. keybrokerd with the local provider (master key in $demo/master.key)"
"$bin_dir/keybrokerctl" init-local --master-key "$demo/master.key"
cat > "$demo/keybroker.toml" <<TOML
socket = "$demo/kb.sock"
state_dir = "$demo/state"
log_level = "info"
admins = ["$user"]

[instances.default]
provider = "local"
clients = ["$user"]
auto_create = true
master_key_file = "$demo/master.key"
TOML
"$bin_dir/keybrokerd" --config "$demo/keybroker.toml" 2> "$demo/keybrokerd.log" &
broker_pid=$!
wait_for_socket "$demo/kb.sock" "$broker_pid" "$demo/keybrokerd.log"
"$bin_dir/keybrokerctl" --config "$demo/keybroker.toml" status

step "2. mariadb-install-db and mariadbd with the plugin: encrypted from the first page"
cat > "$demo/my.cnf" <<CNF
[mariadbd]
user = $user
datadir = $datadir
socket = $sock
pid-file = $demo/mysqld.pid
log-error = $demo/error.log
skip-networking
plugin-dir = $plugin_dir
plugin-load-add = keybroker_key_management
keybroker-key-management = FORCE_PLUS_PERMANENT
keybroker-key-management-socket = $demo/kb.sock
innodb-encrypt-tables = ON
innodb-encrypt-log = ON
innodb-encrypt-temporary-tables = ON
encrypt-tmp-files = ON
innodb-encryption-threads = 2
innodb-buffer-pool-size = 64M
CNF
mariadb-install-db --defaults-file="$demo/my.cnf" --skip-test-db \
  --auth-root-authentication-method=socket --auth-root-socket-user="$user" \
  --plugin-dir="$plugin_dir" > "$demo/install.log" 2>&1 \
  || { cat "$demo/install.log" "$demo/error.log" >&2; exit 1; }
mariadbd --defaults-file="$demo/my.cnf" > /dev/null 2>&1 &
mariadbd_pid=$!
wait_for_socket "$sock" "$mariadbd_pid" "$demo/error.log"
until "${mysql[@]}" -e "SELECT 1" > /dev/null 2>&1; do sleep 0.1; done
grep -F "keybroker_key_management:" "$demo/error.log" | sed 's/^/    /'

step "3. An encrypted table (key 5) and, for comparison, one with ENCRYPTED=NO"
"${mysql[@]}" -v <<SQL
CREATE DATABASE demo;
CREATE TABLE demo.secrets (id INT PRIMARY KEY, note VARCHAR(100)) ENCRYPTION_KEY_ID = 5;
CREATE TABLE demo.public (id INT PRIMARY KEY, note VARCHAR(100)) ENCRYPTED = NO;
INSERT INTO demo.secrets VALUES (1, '$secret');
INSERT INTO demo.public VALUES (1, '$secret');
SELECT * FROM demo.secrets;
SQL

step "4. information_schema.INNODB_TABLESPACES_ENCRYPTION"
"${mysql[@]}" -e "SELECT NAME, ENCRYPTION_SCHEME, CURRENT_KEY_ID, MIN_KEY_VERSION, CURRENT_KEY_VERSION
  FROM information_schema.INNODB_TABLESPACES_ENCRYPTION ORDER BY NAME"

step "5. Rotate key 5 through the broker: InnoDB sees version 2 at once"
"${mysql[@]}" -v -e "SET GLOBAL keybroker_key_management_rotate_key = 5;
  SELECT NAME, CURRENT_KEY_ID, CURRENT_KEY_VERSION FROM information_schema.INNODB_TABLESPACES_ENCRYPTION
  WHERE NAME LIKE 'demo/%'"
"$bin_dir/keybrokerctl" --config "$demo/keybroker.toml" list

step "6. The plugin's status"
"${mysql[@]}" -e "SHOW GLOBAL STATUS LIKE 'keybroker%'"

step "7. Is \"$secret\" anywhere on disk?"
"${mysql[@]}" -e "FLUSH TABLES demo.secrets, demo.public FOR EXPORT; UNLOCK TABLES"
found=$(grep -rlaF "$secret" "$datadir" || true)
for f in "$datadir/demo/secrets.ibd" "$datadir/demo/public.ibd" "$datadir"/ib_logfile0 "$datadir"/ibdata1; do
  if grep -qaF "$secret" "$f"; then echo "    FOUND      ${f#$demo/}"; else echo "    not found  ${f#$demo/}"; fi
done
if [ "$found" != "$datadir/demo/public.ibd" ]; then
  echo "demo: the secret is on disk outside the ENCRYPTED=NO table: $found" >&2
  exit 1
fi
echo "    Only the ENCRYPTED=NO table holds the plaintext."

step "8. Stopping mariadbd and keybrokerd"
stop_all
mariadbd_pid= broker_pid=
echo "    Done. Everything the demo made is in $demo (remove it with rm -rf)."
