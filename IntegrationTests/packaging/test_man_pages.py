"""The man pages are generated from man/*.scd and cannot drift from the code: every system and
status variable of the plugin, every setting keybrokerd accepts and every keybrokerctl command
is in its page (issue 14)."""
import re
import subprocess

from broker import ROOT  # noqa: E402

MAN = ROOT / "man"
PLUGIN = ROOT / "Sources/keybroker_key_management/plugin.c"
CONFIG = ROOT / "Sources/BrokerConfiguration"


def page(name):
    return (MAN / f"{name}.scd").read_text()


def plugin_system_variables():
    names = re.findall(r"MYSQL_SYSVAR_[A-Z]+\((\w+),", PLUGIN.read_text())
    assert len(names) >= 6, names
    return [f"keybroker_key_management_{n}" for n in names]


def plugin_status_variables():
    text = PLUGIN.read_text()
    counters = re.search(r"static const char \*names\[STATUS_COUNTERS\]\s*=\s*\{(.*?)\};", text, re.S).group(1)
    names = re.findall(r'"(\w+)"', counters)
    names += re.findall(r'\(struct st_mysql_show_var\) \{ "(\w+)"', text)
    assert {"key_ids_cached", "answers_refused", "connected"} <= set(names), names
    return [f"Keybroker_key_management_{n}" for n in names]


def configuration_keys():
    """Every key BrokerConfiguration reads: reader.<type>("key"), key lists and loops over keys."""
    keys = set()
    for source in CONFIG.glob("*.swift"):
        text = source.read_text()
        keys |= set(re.findall(r'reader\.\w+\("(\w+)"', text))
        for block in re.findall(r"static let \w+Keys(?:: Set<String>)? = \[(.*?)\]", text, re.S):
            keys |= set(re.findall(r'"(\w+)"', block))
        for block in re.findall(r"for key in \[(.*?)\]", text, re.S):
            keys |= set(re.findall(r'"(\w+)"', block))
    assert len(keys) >= 35, sorted(keys)
    return sorted(keys)


def documented_terms(text):
    """Words set in bold (*word*), as scdoc writes option and variable names."""
    return set(re.findall(r"\*([\w.-]+)\*", text))


def test_every_plugin_variable_is_documented():
    terms = documented_terms(page("keybroker_key_management.7"))
    missing = [v for v in plugin_system_variables() + plugin_status_variables() if v not in terms]
    assert missing == [], f"keybroker_key_management(7) lacks {missing}"


def test_every_broker_status_the_plugin_names_is_documented():
    names = re.search(r"\{ \"OK\",(.*?)\}", (ROOT / "Sources/keybroker_key_management/broker_error.c").read_text(),
                      re.S)
    statuses = re.findall(r'"(\w+)"', names.group(1)) if names else []
    assert "PARTIAL" in statuses, statuses
    terms = documented_terms(page("keybroker_key_management.7"))
    assert [s for s in statuses if s not in terms] == []


def test_every_configuration_key_is_documented():
    terms = documented_terms(page("keybroker.toml.5"))
    missing = [k for k in configuration_keys() if k not in terms]
    assert missing == [], f"keybroker.toml(5) lacks {missing}"


def test_every_keybrokerctl_command_and_option_is_documented():
    sources = "".join(p.read_text() for p in (ROOT / "Sources/keybrokerctl").glob("*.swift"))
    structs = re.findall(r"subcommands: \[(.*?)\]", sources, re.S)[0]
    commands = []
    for name in re.findall(r"(\w+)\.self", structs):
        body = re.search(rf"struct {name}: ParsableCommand \{{(.*?)\n\}}", sources, re.S).group(1)
        explicit = re.search(r'commandName: "([\w-]+)"', body)
        commands.append(explicit.group(1) if explicit else name.lower())
    options = set(re.findall(r'customLong\("([\w-]+)"\)', sources))
    options |= {re.sub(r"([A-Z])", r"-\1", v).lower() for v in
                re.findall(r"@(?:Option|Flag)\(name: \.long[^)]*\)[^\n]*\n?\s*var (\w+)", sources)}
    text = page("keybrokerctl.8")
    terms = documented_terms(text)
    assert len(commands) >= 10, commands
    assert [c for c in commands if c not in terms] == []
    assert [o for o in sorted(options) if f"--{o}" not in terms] == []


def test_every_keybrokerd_option_is_documented():
    sources = (ROOT / "Sources/keybrokerd/Keybrokerd.swift").read_text()
    options = re.findall(r"@(?:Option|Flag)\(name: \.long[^\n]*\n\s*var (\w+)", sources)
    assert options, sources[:500]
    terms = documented_terms(page("keybrokerd.8"))
    assert [o for o in options if f"--{o}" not in terms] == []


def test_pages_render_with_the_version(tmp_path):
    build = tmp_path / "man"
    r = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "man", f"MAN_BUILD_DIR={build}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    version = re.search(r'number = "([^"]+)"', (ROOT / "Sources/Broker/KeybrokerVersion.swift").read_text()).group(1)
    pages = sorted(p.name for p in build.iterdir())
    assert pages == ["keybroker.toml.5", "keybroker_key_management.7", "keybrokerctl.8", "keybrokerd.8"]
    for p in build.iterdir():
        text = p.read_text()
        assert f"keybroker {version}" in text, p.name
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(p)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and r.stderr == "", f"{p.name}: {r.stderr}"
