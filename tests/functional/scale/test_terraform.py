"""deploy/terraform/queue-redis: every file parses as HCL2 with the parser
the Nomad tests use (@cdktf/hcl2json), and the module says what the queue
Redis needs: maxmemory-policy noeviction, a security group that admits
only the digestd nodes' groups on the Redis port, automatic failover to a
replica in another zone, an engine with XAUTOCLAIM and XTRIM MINID, and
every variable and output documented.
"""
import glob
import os
import re
import shutil
import subprocess

import pytest

from lib import deploy_helpers as dh
from lib.harness import ROOT

MODULE = os.path.join(ROOT, "deploy", "terraform", "queue-redis")
FILES = sorted(glob.glob(os.path.join(MODULE, "*.tf")))


def merged():
    """The module's files merged: {block type: {...}}."""
    out = {}
    for path in FILES:
        for kind, body in dh.hcl2json(path).items():
            if isinstance(body, dict):
                for k, v in body.items():
                    out.setdefault(kind, {}).setdefault(k, v)
            else:
                out.setdefault(kind, []).extend(body)
    return out


def one(block):
    assert isinstance(block, list) and len(block) == 1, block
    return block[0]


def resources(m, rtype):
    return {name: one(body) for name, body in m["resource"].get(rtype, {}).items()}


def test_files_parse_as_hcl2():
    assert {os.path.basename(f) for f in FILES} >= {
        "main.tf", "variables.tf", "outputs.tf", "versions.tf"}
    for path in FILES:
        j = dh.hcl2json(path)
        assert isinstance(j, dict) and j, path


def test_noeviction():
    m = merged()
    pgs = resources(m, "aws_elasticache_parameter_group")
    (pg,) = pgs.values()
    params = {p["name"]: p["value"] for p in pg["parameter"]}
    assert params.get("maxmemory-policy") == "noeviction", params
    (rg,) = resources(m, "aws_elasticache_replication_group").values()
    (pgname,) = pgs
    assert rg["parameter_group_name"] == \
        "${aws_elasticache_parameter_group.%s.name}" % pgname


def test_security_group_admits_only_the_digestd_groups():
    m = merged()
    sgs = resources(m, "aws_security_group")
    (sgname, sg), = sgs.items()
    # No inline rules, no CIDR anywhere: a source can only be a group.
    assert "ingress" not in sg
    for path in FILES:
        with open(path) as f:
            text = f.read()
        assert not re.search(r"cidr|0\.0\.0\.0|::/0|prefix_list", text), path
    assert "aws_security_group_rule" not in m["resource"]
    assert "aws_vpc_security_group_egress_rule" not in m["resource"]
    rules = resources(m, "aws_vpc_security_group_ingress_rule")
    assert len(rules) == 1, rules
    (rule,) = rules.values()
    assert rule["for_each"] == "${toset(var.digestd_security_group_ids)}"
    assert rule["referenced_security_group_id"] == "${each.value}"
    assert rule["security_group_id"] == "${aws_security_group.%s.id}" % sgname
    assert rule["ip_protocol"] == "tcp"
    assert rule["from_port"] == rule["to_port"] == "${var.port}"
    var = one(m["variable"]["digestd_security_group_ids"])
    assert "default" not in var, "the admitted groups must be given"
    assert var["type"] == "${list(string)}"
    (rg,) = resources(m, "aws_elasticache_replication_group").values()
    assert rg["security_group_ids"] == ["${aws_security_group.%s.id}" % sgname]
    assert rg["port"] == "${var.port}"


def test_automatic_failover():
    m = merged()
    (rg,) = resources(m, "aws_elasticache_replication_group").values()
    assert rg["automatic_failover_enabled"] is True
    assert rg["multi_az_enabled"] is True
    assert rg["num_cache_clusters"] == "${1 + var.replicas}"
    reps = one(m["variable"]["replicas"])
    assert reps["default"] >= 1
    cond = one(reps["validation"])["condition"]
    assert "var.replicas >= 1" in cond
    subnets = one(m["variable"]["subnet_ids"])
    assert "length(var.subnet_ids) >= 2" in one(subnets["validation"])["condition"]
    sn = resources(m, "aws_elasticache_subnet_group")
    (snname,) = sn
    assert rg["subnet_group_name"] == "${aws_elasticache_subnet_group.%s.name}" % snname
    assert rg["engine"] == "redis"
    major, minor = (int(x) for x in
                    one(m["variable"]["engine_version"])["default"].split(".")[:2])
    assert (major, minor) >= (6, 2), "XAUTOCLAIM and XTRIM MINID need 6.2"
    assert rg["at_rest_encryption_enabled"] is True
    assert rg["transit_encryption_enabled"] == "${var.transit_encryption}"
    assert one(m["variable"]["auth_token"]).get("sensitive") is True
    # digestd's [queue_redis] host is the primary endpoint, which follows
    # a failover.
    out = one(m["output"]["primary_endpoint"])
    assert "primary_endpoint_address" in out["value"]


def test_variables_and_outputs_documented():
    m = merged()
    with open(os.path.join(MODULE, "README.md")) as f:
        readme = f.read()
    for kind in ("variable", "output"):
        for name, body in m[kind].items():
            assert one(body).get("description"), "%s %s undocumented" % (kind, name)
            assert name in readme, "%s %s not in README.md" % (kind, name)


def test_terraform_fmt():
    """The canonical layout, where terraform is installed (offline: fmt
    needs no provider)."""
    exe = shutil.which("terraform")
    if exe is None:
        pytest.skip("terraform is not installed")
    p = subprocess.run([exe, "fmt", "-check", "-diff", MODULE], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
