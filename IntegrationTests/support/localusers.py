"""Unprivileged local users and groups that a test module creates (useradd as root) and removes
again, so attacks run as real other users: SO_PEERCRED reports their uids, the file system
judges their access.
"""
import grp
import os
import pwd
import subprocess
import sys


class LocalUsers:
    """Users and groups named `kb<tag><pid>-<role>` (unique per run, at most 32 characters)."""

    def __init__(self, tag):
        assert os.geteuid() == 0, "creating users needs root (CI runs as root)"
        self.prefix = f"kb{tag}{os.getpid() % 100000}"
        self.users = []
        self.groups = []

    def name(self, role):
        name = f"{self.prefix}-{role}"
        assert len(name) <= 32, name
        return name

    def group(self, role):
        name = self.name(role)
        subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
        self.groups.append(name)
        return grp.getgrnam(name)

    def user(self, role, groups=()):
        """A system user with its own primary group, no home, no login shell."""
        name = self.name(role)
        cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group"]
        if groups:
            cmd += ["--groups", ",".join(groups)]
        subprocess.run(cmd + [name], check=True, capture_output=True)
        self.users.append(name)
        return pwd.getpwnam(name)

    @staticmethod
    def add_to_group(user, group):
        subprocess.run(["gpasswd", "-a", user, group], check=True, capture_output=True)

    @staticmethod
    def remove_from_group(user, group):
        subprocess.run(["gpasswd", "-d", user, group], check=True, capture_output=True)

    @staticmethod
    def command(user, argv):
        """`argv` run as `user` with the groups /etc/group gives it."""
        return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]

    def python(self, user, script, *args):
        """A Python script run as `user` (the IntegrationTests support modules on its path)."""
        return self.command(user, [sys.executable, str(script), *map(str, args)])

    def cleanup(self):
        for name in reversed(self.users):
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)  # only processes of our own users
            subprocess.run(["userdel", name], capture_output=True)
        for name in reversed(self.groups):
            subprocess.run(["groupdel", name], capture_output=True)
        self.users, self.groups = [], []
