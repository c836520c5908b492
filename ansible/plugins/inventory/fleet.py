# dbcadence.maintenance.fleet: the fleet as an Ansible inventory plugin.
# The same hosts, groups and variables as the inventory script (ansible/inventory/
# dbcadence_inventory.sh): it runs `dbcadence inventory --list` on the sources file, then adds
# Ansible's constructed features (compose, groups, keyed_groups) and an optional cache, so that
# a large fleet is not probed on every ansible-playbook run.

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet
short_description: The database fleet that dbcadence inventories, as Ansible hosts and groups
description:
  - Probes the endpoints of a dbcadence sources file with C(dbcadence inventory --list) and adds
    what it finds, as the inventory script does.
  - Server hosts (one per instance, groups C(servers), C(servers_<engine>)) for server tasks;
    database hosts (C(<instance>.<database>), groups C(databases), C(postgresql)/C(mysql),
    C(env_<env>), C(tier_<tier>), C(instance_<id>), C(copies)) for database tasks; runners
    (group C(runners)); C(dbcadence_unreachable) for endpoints that did not answer.
  - Where each host's modules run follows the sources (their C(ansible) variables); without
    them, over SSH at the server's login_host, or on the controller for a server reached
    through the loopback or a socket.
  - The configuration file's name must end in C(.dbcadence.yml) or C(.dbcadence.yaml).
  - Secrets never reach the inventory, the cache or the output, only references to them
    (a password file's path or an environment variable's name).
options:
  plugin:
    description: Marks the file as this plugin's configuration.
    required: true
    choices: ['dbcadence.maintenance.fleet']
  sources:
    description:
      - The dbcadence sources file (endpoints, naming rules, runners).
      - A relative path is read from the configuration file's directory.
    type: str
    required: true
    env:
      - name: DBCADENCE_SOURCES
  dbcadence_bin:
    description: The dbcadence command.
    type: str
    default: dbcadence
    env:
      - name: DBCADENCE_BIN
  probe_timeout:
    description: Seconds one endpoint may take in all.
    type: int
    default: 30
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
"""

EXAMPLES = r"""
# fleet.dbcadence.yml
plugin: dbcadence.maintenance.fleet
sources: /etc/dbcadence/sources.yml
keyed_groups:
  # engine_postgresql, engine_mysql
  - key: dbcadence_engine
    prefix: engine
  # flavour_mariadb, flavour_postgresql...
  - key: dbcadence_flavour
    prefix: flavour
groups:
  # the production databases that are not copies
  production_primaries: dbcadence_env == 'production' and dbcadence_copy_of is not defined
compose:
  backup_window: "'02:00' if dbcadence_env == 'production' else '04:00'"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /var/cache/dbcadence/inventory
cache_timeout: 3600
"""

import json
import os
import subprocess

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "dbcadence.maintenance.fleet"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(
            (".dbcadence.yml", ".dbcadence.yaml")
        )

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        key = self.get_cache_key(path)
        use_cache = self.get_option("cache")
        data = None
        if use_cache and cache:
            data = self._cache.get(key)
        if data is None:
            data = self._probe(path)
            if use_cache:
                self._cache[key] = data
        self._populate(data)

    def _probe(self, path):
        sources = os.path.expanduser(self.get_option("sources"))
        if not os.path.isabs(sources):
            sources = os.path.join(os.path.dirname(os.path.abspath(path)), sources)
        argv = [
            self.get_option("dbcadence_bin"),
            "inventory",
            "--list",
            "--sources",
            sources,
            "--probe-timeout",
            str(self.get_option("probe_timeout")),
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as e:
            raise AnsibleParserError(
                f"dbcadence could not be run ({e}); install it or set dbcadence_bin / DBCADENCE_BIN"
            )
        if done.returncode != 0:
            raise AnsibleParserError(
                f"dbcadence inventory failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
            )
        try:
            return json.loads(done.stdout)
        except ValueError as e:
            raise AnsibleParserError(f"dbcadence inventory printed no JSON: {e}")

    def _populate(self, data):
        hostvars = data.get("_meta", {}).get("hostvars", {})
        strict = self.get_option("strict")
        for name, group in data.items():
            if name in ("_meta", "all"):
                continue
            self.inventory.add_group(name)
            for host in group.get("hosts", []):
                self.inventory.add_host(host, group=name)
            for var, value in group.get("vars", {}).items():
                self.inventory.set_variable(name, var, value)
        for host, variables in hostvars.items():
            self.inventory.add_host(host)
            for var, value in variables.items():
                self.inventory.set_variable(host, var, value)
            # Constructed features over the host's own variables.
            self._set_composite_vars(self.get_option("compose"), variables, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), variables, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, host, strict=strict)
