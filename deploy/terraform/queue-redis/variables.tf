variable "name" {
  description = "Name of the queue Redis; prefixes every resource."
  type        = string
  default     = "digestd-queue"
}

variable "vpc_id" {
  description = "VPC the queue Redis and the digestd nodes live in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the cache nodes, at least two availability zones for failover."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "Give at least two subnets so that a replica can live in another zone."
  }
}

variable "digestd_security_group_ids" {
  description = "Security groups of the digestd nodes (Nomad clients running digestd and digestctl): the only sources admitted on the Redis port."
  type        = list(string)
}

variable "node_type" {
  description = "Cache node type. The queues hold small entries (one per job) and checkpoints; a small node carries millions of digests a day."
  type        = string
  default     = "cache.t4g.small"
}

variable "replicas" {
  description = "Replicas besides the primary; at least one for automatic failover."
  type        = number
  default     = 1

  validation {
    condition     = var.replicas >= 1 && var.replicas <= 5
    error_message = "replicas must be between 1 and 5."
  }
}

variable "engine_version" {
  description = "Redis engine version; digestd needs 6.2 or later (XAUTOCLAIM, XTRIM MINID)."
  type        = string
  default     = "7.0"
}

variable "port" {
  description = "Redis port."
  type        = number
  default     = 6379
}

variable "transit_encryption" {
  description = "Encrypt in transit. digestd's Redis client (hiredis 0.14 as packaged by Debian 12) speaks no TLS: leave false and keep the traffic inside the VPC, or set true and run a local TLS tunnel (stunnel, spiped) beside digestd."
  type        = bool
  default     = false
}

variable "auth_token" {
  description = "Redis AUTH token (needs transit_encryption on AWS); empty for none. Put it in digestd's [queue_redis] password."
  type        = string
  default     = ""
  sensitive   = true
}

variable "snapshot_retention_days" {
  description = "Daily snapshots kept."
  type        = number
  default     = 3
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
