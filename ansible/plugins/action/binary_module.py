# -*- coding: utf-8 -*-
# Copyright: dbcadence developers
# Apache-2.0
"""Run a dbcadence binary module from a per-host cache: one SSH round trip per task.

Stock Ansible runs a binary module in five or six round trips per task: make a temp dir,
copy the binary (3 to 6 MB), copy the arguments, chmod, run, remove the temp dir. Pipelining
does not apply to binary modules. Every dbcadence module is routed to this action plugin
(meta/runtime.yml), which keeps each binary in a private cache directory on the managed node,
named by the binary's SHA-256, and runs it with the arguments on standard input:

    fast path (binary cached):  1 round trip  -- `exec <cache>/<module>-<sha256> /dev/stdin`
    first use on a host:        3 round trips plus the copy -- mkdir, put, chmod + rename

The path names the content, so an upgraded collection uploads its new binaries on first use
and removes the old ones; a file is only ever renamed into place whole, so parallel tasks on
one host (forks, delegate_to a runner) never run half a binary.

The stock path (copy per task, no cache) still runs when
  - the host sets `dbcadence_module_cache: false`,
  - the task uses become (the cache belongs to the connecting user) or async,
  - the cache cannot be written (a warning says why).
`dbcadence_module_cache: /some/private/dir` puts the cache elsewhere (default
`~/.ansible/dbcadence/modules` of the connecting user); it must be private to that user.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash
from ansible.vars.clean import remove_internal_keys

try:  # ansible-core 2.19+: arguments and results go through the module serialisation profiles
    from ansible.module_utils.common.json import Direction, get_module_encoder
except ImportError:  # older cores: plain JSON
    Direction = get_module_encoder = None

display = Display()

DEFAULT_CACHE = "~/.ansible/dbcadence/modules"
CACHE_MISS = "DBCADENCE-MODULE-CACHE-MISS"


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp

        cache = self._cache_dir(task_vars)
        reason = self._why_not_cached(cache)
        if reason:
            display.vvv("dbcadence: copying the module for this task (%s)" % reason)
            return merge_hash(result, self._run_stock(task_vars))

        # The shipped modules are links to one multi-call binary: cache that once per host.
        module_path = os.path.realpath(self._local_module_path())
        name = os.path.basename(module_path)
        final = "%s-%s" % (name, _sha256(module_path))

        module_args = dict(self._task.args)
        self._update_module_args(self._task.action, module_args, task_vars)
        args_json = _encode(module_args).encode("utf-8")

        res = self._run_cached(cache, final, args_json)
        if res is None:
            installed, why = self._install(cache, name, final, module_path)
            if not installed:
                display.warning(
                    "dbcadence could not keep its module binaries in %s on this host (%s); "
                    "each task copies its module instead. Set dbcadence_module_cache to a "
                    "writable private directory, or to false to silence this." % (cache, why))
                return merge_hash(result, self._run_stock(task_vars))
            res = self._run_cached(cache, final, args_json)
            if res is None:
                raise AnsibleError("dbcadence: %s vanished from %s right after it was copied there" % (final, cache))

        data = self._parse(res)
        remove_internal_keys(data)
        return merge_hash(result, data)

    # -- decisions -----------------------------------------------------------------------------

    def _cache_dir(self, task_vars):
        value = task_vars.get("dbcadence_module_cache", DEFAULT_CACHE)
        value = self._templar.template(value)
        if value is False or (isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "")):
            return None
        return str(value)

    def _why_not_cached(self, cache):
        if cache is None:
            return "dbcadence_module_cache is false"
        if self._task.async_val:
            return "async task"
        if self._connection.become:
            return "become: the cache belongs to the connecting user"
        if not (cache.startswith("/") or cache == "~" or cache.startswith("~/")):
            return "dbcadence_module_cache must be an absolute path or start with ~/"
        return None

    def _local_module_path(self):
        ctx = self._shared_loader_obj.module_loader.find_plugin_with_context(
            self._task.action, collection_list=self._task.collections)
        if not ctx.resolved or not ctx.plugin_resolved_path:
            raise AnsibleError("dbcadence: module %s was not found on the controller" % self._task.action)
        return ctx.plugin_resolved_path

    # -- remote commands -----------------------------------------------------------------------

    def _run_cached(self, cache, final, args_json):
        """Run the cached binary with the arguments on stdin; None when it is not cached."""
        binary = _shell_path(cache, final)
        env = self._compute_environment_string()
        cmd = 'f=%s; if [ -x "$f" ]; then %s exec "$f" /dev/stdin; fi; echo %s' % (binary, env, CACHE_MISS)
        res = self._low_level_execute_command(cmd, sudoable=False, in_data=args_json)
        if res.get("stdout", "").strip() == CACHE_MISS:
            return None
        return res

    def _install(self, cache, name, final, module_path):
        """Copy the binary into the cache under a temporary name and rename it into place."""
        res = self._low_level_execute_command(
            "umask 077 && mkdir -p %s && cd %s && pwd -P" % (_shell_path(cache), _shell_path(cache)),
            sudoable=False)
        lines = res.get("stdout", "").strip().splitlines()
        if res.get("rc") != 0 or not lines or not lines[-1].startswith("/"):
            return False, (res.get("stderr") or res.get("stdout") or "mkdir failed").strip()
        directory = lines[-1]
        partial = "%s.%s.part" % (final, secrets.token_hex(6))
        try:
            self._connection.put_file(module_path, directory + "/" + partial)
        except AnsibleError as error:
            return False, str(error)
        # Remove this module's other versions (never another task's .part file), then rename.
        script = (
            'cd {dir} && chmod 0700 {part} && for old in {name}-*; do '
            'case "$old" in *.part|{final}) ;; *) rm -f -- "$old" ;; esac; done && mv -f -- {part} {final}'
        ).format(dir=shlex.quote(directory), part=shlex.quote(partial),
                 name=_glob_quote(name), final=shlex.quote(final))
        res = self._low_level_execute_command(script, sudoable=False)
        if res.get("rc") != 0:
            return False, (res.get("stderr") or "rename failed").strip()
        return True, None

    def _parse(self, res):
        try:
            return self._parse_returned_data(res, "legacy")
        except TypeError:  # ansible-core before 2.19 takes no profile
            return self._parse_returned_data(res)

    def _run_stock(self, task_vars):
        """Ansible's own way for a binary module: copy it to a temp dir for this one task."""
        wrap_async = self._task.async_val and not self._connection.has_native_async
        data = self._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return data


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as binary:
        for block in iter(lambda: binary.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _encode(module_args):
    if get_module_encoder is None:
        return json.dumps(module_args)
    return json.dumps(module_args, cls=get_module_encoder("legacy", Direction.CONTROLLER_TO_MODULE))


def _shell_path(cache, *parts):
    """A shell word for cache/parts, with a leading ~ expanded by the remote shell as $HOME."""
    path = "/".join((cache.rstrip("/") or "/",) + parts)
    if path == "~" or path.startswith("~/"):
        return '"$HOME"' + shlex.quote(path[1:])
    return shlex.quote(path)


def _glob_quote(name):
    """Module file names are [a-z_-]; anything else would be quoted out of the glob."""
    if all(c.isalnum() or c in "_-" for c in name):
        return name
    raise AnsibleError("dbcadence: unexpected module file name %r" % name)
