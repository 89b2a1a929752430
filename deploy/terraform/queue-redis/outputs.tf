output "primary_endpoint" {
  description = "Host for digestd's [queue_redis] host (follows failover)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Port for digestd's [queue_redis] port."
  value       = var.port
}

output "reader_endpoint" {
  description = "Read-only endpoint, for dashboards and ad-hoc inspection."
  value       = aws_elasticache_replication_group.this.reader_endpoint_address
}

output "security_group_id" {
  description = "The security group of the queue Redis."
  value       = aws_security_group.this.id
}
