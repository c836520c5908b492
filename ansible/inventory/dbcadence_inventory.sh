#!/bin/sh
# Executable inventory for `ansible-inventory -i` / `ansible-playbook -i`:
# every reachable database becomes a host, grouped by engine, env_<env>, tier_<tier> and
# instance_<id>. Set DBCADENCE_SOURCES to the sources file; `dbcadence` must be on PATH
# (or set DBCADENCE_BIN).
exec "${DBCADENCE_BIN:-dbcadence}" inventory "$@"
