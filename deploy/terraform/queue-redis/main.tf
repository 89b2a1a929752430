# The dedicated queue Redis of digestd: digest:q:* streams, checkpoints,
# enqueue markers and schedule records ([queue_redis] in digestd.conf).
# Every digest:* key carries a TTL or a trim, so memory is bounded; the
# parameter group refuses eviction, because an evicted stream entry is a
# lost job: a full queue Redis must fail writes loudly instead.

locals {
  family = "redis${split(".", var.engine_version)[0]}"
}

resource "aws_elasticache_subnet_group" "this" {
  name        = "${var.name}-subnets"
  description = "Subnets of the digestd queue Redis"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

resource "aws_security_group" "this" {
  name        = "${var.name}-sg"
  description = "digestd queue Redis: admits only the digestd nodes"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "digestd" {
  for_each = toset(var.digestd_security_group_ids)

  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  description                  = "Redis from digestd nodes"
}

resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-params"
  family      = local.family
  description = "digestd queue Redis: no eviction"

  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }

  # AOF is not offered on replication groups with failover; durability
  # comes from the replica and snapshots, and from digestd's own
  # visibility timeout, which reclaims jobs of a lost instance.
  parameter {
    name  = "notify-keyspace-events"
    value = ""
  }

  tags = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = var.name
  description                = "digestd queue Redis"
  engine                     = "redis"
  engine_version             = var.engine_version
  node_type                  = var.node_type
  port                       = var.port
  num_cache_clusters         = 1 + var.replicas
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.this.id]
  parameter_group_name       = aws_elasticache_parameter_group.this.name
  at_rest_encryption_enabled = true
  transit_encryption_enabled = var.transit_encryption
  auth_token                 = var.auth_token == "" ? null : var.auth_token
  snapshot_retention_limit   = var.snapshot_retention_days
  apply_immediately          = false
  tags                       = var.tags
}
