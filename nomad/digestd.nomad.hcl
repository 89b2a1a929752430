# digestd as a Nomad service job (exec driver), with a redis_exporter for
# the queue Redis beside it.
#
#   nomad var put nomad/jobs/digestd unsubscribe_secret=... \
#       smtp_password=... queue_redis_password=...
#   nomad job run -var digestd_uid=$(id -u digestd) nomad/digestd.nomad.hcl
#
# The binary is expected at /usr/local/sbin/digestd on every client (make
# install, or a package); the exec driver runs it in a chroot built from the
# client's chroot_env, which includes /usr/local by default.
#
# Several allocations (count below) on several nodes share the same queues:
# each one's workers join the Redis Stream consumer group "digestd", so
# adding an allocation adds workers, and a job held by an allocation that
# vanished is reclaimed by another after queue.visibility_timeout.

# The files holding secrets are rendered 0600 and must belong to the task's
# user, but a template takes only a numeric owner: the uid of the digestd
# user, the same on every client that runs the job (pin it where the user
# is created if your clients differ).
variable "digestd_uid" {
  type        = number
  description = "uid of the digestd user on the clients (id -u digestd)"
}

job "digestd" {
  type        = "service"
  datacenters = ["dc1"]

  # One allocation at a time: each drains (up to drain_timeout) before its
  # replacement starts, and a deployment whose /healthz and /readyz do not
  # pass rolls back.
  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "20s"
    healthy_deadline  = "5m"
    progress_deadline = "10m"
    auto_revert       = true
  }

  group "digestd" {
    count = 2

    # The HTTP port is static so that the config's listen line, the
    # service and every scrape agree on it; two allocations therefore
    # never share a node.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "http" {
        static = 9187
      }
    }

    # A supervisor that keeps failing (bad config after a variable change,
    # Redis unreachable at start) is restarted in place a few times, then
    # rescheduled elsewhere.  Worker crashes never reach this: the
    # supervisor replaces workers itself.
    restart {
      attempts = 3
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    reschedule {
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "10m"
      unlimited      = true
    }

    service {
      name     = "digestd"
      provider = "nomad"
      port     = "http"
      # Prometheus finds the targets through nomad_sd_configs and keeps
      # those tagged "prometheus" (see docs/operations.md).
      tags = ["prometheus", "digestd"]

      meta {
        metrics_path = "/metrics"
        scrape       = "true"
      }

      # Liveness: the supervisor's event loop answers.  Failing it
      # restarts the task.
      check {
        name     = "digestd-healthz"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }

      # Readiness: every pool has a ready worker and no drain runs; 503
      # while draining, so the allocation leaves the catalog first.
      check {
        name     = "digestd-readyz"
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "digestd" {
      driver = "exec"
      # The user from systemd/digestd.sysusers must exist on the client
      # (the exec driver would run the task as nobody otherwise).
      user = "digestd"

      config {
        command = "/usr/local/sbin/digestd"
        args    = ["-c", "${NOMAD_SECRETS_DIR}/digestd.conf"]
      }

      # SIGTERM drains: workers finish or checkpoint their job within
      # drain_timeout (60s below), then digestd exits 0.  kill_timeout must
      # be longer, or Nomad's SIGKILL cuts the drain short.
      #
      # NOTE: a Nomad client caps kill_timeout at its max_kill_timeout,
      # 30s by default.  Set it on every client that runs digestd:
      #   client { max_kill_timeout = "120s" }
      kill_signal  = "SIGTERM"
      kill_timeout = "90s"

      # Deregister from the catalog before the drain starts.
      shutdown_delay = "5s"

      # The config, rendered into the task's secrets dir: a private tmpfs
      # that no other task and no `nomad alloc fs` can read.  It holds no
      # secret itself: each *_file key names a file rendered beside it
      # from Nomad Variables (below), relative to the config's directory.
      # Every file is 0600 and the task user's (uid).  A change to a
      # template or to the variables sends SIGHUP: digestd validates the
      # new file, reads the secret files again and, if all is valid,
      # replaces its workers gracefully; if not, it keeps running on the
      # old configuration and counts a failed reload (alert
      # DigestConfigReloadFailed).
      template {
        destination          = "secrets/digestd.conf"
        change_mode          = "signal"
        change_signal        = "SIGHUP"
        perms                = "0600"
        uid                  = var.digestd_uid
        error_on_missing_key = true
        data                 = <<-EOT
        [supervisor]
        listen = {{ env "NOMAD_IP_http" }}:9187
        drain_timeout = 60s
        stall_timeout = 120s
        log_level = info
        log_format = json

        [redis]
        host = redis-activity.service.internal
        port = 6379
        timeout = 2s

        [queue_redis]
        host = redis-queue.service.internal
        port = 6379
        password_file = queue_redis_password
        timeout = 2s

        [queue]
        backend = redis
        max_attempts = 3
        visibility_timeout = 10m

        ; workers x memory_limit: 4 x 256M + 8 x 256M = 3072M, plus 128M for
        ; the supervisor and its queue sampler: resources.memory = 3200.
        [pool.priority]
        queue = priority
        workers = 4
        memory_limit = 256M
        max_jobs = 10000
        job_timeout = 15m

        [pool.standard]
        queue = standard
        workers = 8
        memory_limit = 256M

        [digest]
        from = Groups <digest@example.com>
        unsubscribe_url = https://example.com/unsubscribe
        unsubscribe_secret_file = unsubscribe_secret

        [schedule]
        day_start = 00:00
        priority_threshold = 50
        shard_size = 50000

        [transport]
        type = smtp

        [smtp]
        host = smtp.service.internal
        port = 587
        starttls = required
        username = digestd
        password_file = smtp_password
        messages_per_session = 500
        EOT
      }

      # The secrets, one file each, read by digestd at start and on every
      # reload.  The activity Redis takes a password the same way: a
      # [redis] password_file and one more template.
      template {
        destination          = "secrets/unsubscribe_secret"
        change_mode          = "signal"
        change_signal        = "SIGHUP"
        perms                = "0600"
        uid                  = var.digestd_uid
        error_on_missing_key = true
        data                 = <<-EOT
        {{ with nomadVar "nomad/jobs/digestd" -}}
        {{ .unsubscribe_secret }}
        {{- end }}
        EOT
      }

      template {
        destination          = "secrets/queue_redis_password"
        change_mode          = "signal"
        change_signal        = "SIGHUP"
        perms                = "0600"
        uid                  = var.digestd_uid
        error_on_missing_key = true
        data                 = <<-EOT
        {{ with nomadVar "nomad/jobs/digestd" -}}
        {{ .queue_redis_password }}
        {{- end }}
        EOT
      }

      template {
        destination          = "secrets/smtp_password"
        change_mode          = "signal"
        change_signal        = "SIGHUP"
        perms                = "0600"
        uid                  = var.digestd_uid
        error_on_missing_key = true
        data                 = <<-EOT
        {{ with nomadVar "nomad/jobs/digestd" -}}
        {{ .smtp_password }}
        {{- end }}
        EOT
      }

      resources {
        cpu = 2000
        # 4 x 256M (priority) + 8 x 256M (standard) + 128M = 3200 MiB.
        # The kernel OOM killer acting inside this limit kills a worker,
        # which the supervisor replaces (reason="oom").
        memory = 3200
      }

      logs {
        max_files     = 10
        max_file_size = 20
      }
    }
  }

  # One redis_exporter per Redis, not per digestd allocation: the queue
  # Redis's memory, keys, expiries and the queue streams, for the
  # dashboard and the RedisMemoryPressure alert.
  group "redis-exporter" {
    count = 1

    network {
      port "metrics" {
        static = 9121
      }
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    service {
      name     = "digestd-redis-exporter"
      provider = "nomad"
      port     = "metrics"
      tags     = ["prometheus", "redis"]

      meta {
        metrics_path = "/metrics"
        scrape       = "true"
      }

      check {
        type     = "http"
        path     = "/metrics"
        interval = "30s"
        timeout  = "5s"
      }
    }

    task "redis-exporter" {
      driver = "exec"

      # Debian's prometheus-redis-exporter.
      config {
        command = "/usr/bin/prometheus-redis-exporter"
        args = [
          "-redis.addr", "redis://redis-queue.service.internal:6379",
          "-web.listen-address", "${NOMAD_ADDR_metrics}",
          "-check-single-streams", "digest:q:priority,digest:q:standard,digest:dlq",
          "-redis-only-metrics",
        ]
      }

      # Read by the Nomad agent into the task's environment: the agent's
      # own file, 0600.
      template {
        destination = "secrets/exporter.env"
        env         = true
        change_mode = "restart"
        perms       = "0600"
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/digestd" -}}
        REDIS_PASSWORD={{ .queue_redis_password }}
        {{- end }}
        EOT
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
