# The weekly scheduler run as a Nomad periodic batch job.
#
#   nomad job run -var digestd_uid=$(id -u digestd) \
#       nomad/digestctl-schedule-weekly.nomad.hcl
#
# Each run is `digestctl schedule --period weekly`: it enqueues the period's jobs
# and records the run in digest:sched:weekly, which digestd exports as
# digest_schedule_last_success_timestamp_seconds (alert
# DigestScheduleMissed).  Runs are idempotent: the window, and so the job
# ids, are the same for every run inside one period, so a retried or
# force-launched run (nomad job periodic force) enqueues nothing twice.
# stdout and stderr are kept by Nomad: nomad alloc logs [-stderr] ALLOC.
#
# digestctl-schedule-daily.nomad.hcl and digestctl-schedule-weekly.nomad.hcl
# differ only in the period and the cron line (the deployment tests check).

# The uid of the digestd user on the clients, as for nomad/digestd.nomad.hcl:
# the secret files are 0600 and the task user's.
variable "digestd_uid" {
  type        = number
  description = "uid of the digestd user on the clients (id -u digestd)"
}

job "digestctl-schedule-weekly" {
  type        = "batch"
  datacenters = ["dc1"]

  periodic {
    # Periods end at [schedule] day_start (00:00 UTC) on Mondays; run 5
    # minutes later so that the window is complete.
    cron             = "5 0 * * 1"
    time_zone        = "UTC"
    prohibit_overlap = true
  }

  group "schedule" {
    count = 1

    # A failed run (Redis unreachable) is retried in place, then on
    # another node; each retry computes the same window.
    restart {
      attempts = 3
      interval = "30m"
      delay    = "1m"
      mode     = "fail"
    }

    reschedule {
      attempts  = 2
      interval  = "1h"
      delay     = "2m"
      unlimited = false
    }

    task "schedule" {
      driver = "exec"
      user   = "digestd"

      config {
        command = "/usr/local/bin/digestctl"
        args    = ["-c", "${NOMAD_SECRETS_DIR}/digestd.conf", "schedule", "--period", "weekly"]
      }

      # digestctl reads the Redis, queue and schedule sections; keep them
      # equal to nomad/digestd.nomad.hcl's (the deployment tests check),
      # and the secrets too: the config names files rendered beside it.
      template {
        destination          = "secrets/digestd.conf"
        change_mode          = "noop"
        perms                = "0600"
        uid                  = var.digestd_uid
        error_on_missing_key = true
        data                 = <<-EOT
        [supervisor]
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
        EOT
      }

      template {
        destination          = "secrets/unsubscribe_secret"
        change_mode          = "noop"
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
        change_mode          = "noop"
        perms                = "0600"
        uid                  = var.digestd_uid
        error_on_missing_key = true
        data                 = <<-EOT
        {{ with nomadVar "nomad/jobs/digestd" -}}
        {{ .queue_redis_password }}
        {{- end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }

      logs {
        max_files     = 5
        max_file_size = 10
      }
    }
  }
}
