package My::Suite::Keybroker;

# keybroker_key_management against a running keybrokerd. The suite is skipped, with the reason,
# when the broker or the built plugin is missing; IntegrationTests/mariadb/test_mariadb_mtr.py treats a skip as a
# failure.

use File::Basename;
use Cwd qw(abs_path);

@ISA = qw(My::Suite);

my $root = abs_path(dirname(__FILE__) . "/../..");
$ENV{KEYBROKER_PLUGIN_DIR} ||= "$root/build/plugin";
$ENV{KEYBROKER_INSTANCE} ||= "default";

return "Needs a running keybrokerd: set KEYBROKER_SOCKET (see its README.md)"
  unless $ENV{KEYBROKER_SOCKET} and -S $ENV{KEYBROKER_SOCKET};
return "Needs the plugin: run `make plugin` (looked in $ENV{KEYBROKER_PLUGIN_DIR})"
  unless -f "$ENV{KEYBROKER_PLUGIN_DIR}/keybroker_key_management.so";

bless { };
