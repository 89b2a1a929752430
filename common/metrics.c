/*
 * The metrics kept in the workers' cells: the histograms' bucket bounds,
 * the descriptor table that the supervisor's formatter walks, and the fold
 * that moves a dead worker's cells into its pool's totals.
 *
 * Everything here is constant data laid out at compile time, so a worker
 * counting an event touches one cell and nothing else.
 */
#include <stddef.h>

#include "metrics.h"

#define S(x) ((int64_t)(x) * 1000000000LL)
#define MS(x) ((int64_t)(x) * 1000000LL)

/*
 * Bounds are roughly logarithmic over each histogram's useful range, with
 * the steps an operator would put on a dashboard (1, 2.5, 5 and minutes,
 * hours): "how many jobs took over a minute" must be a bucket edge.
 */
const int64_t metrics_hist_bounds_ns[HIST_N][HIST_NB] = {
	/* Job duration: 0.1 s .. 1 h. */
	[HIST_JOB_DURATION] = {
		MS(100), MS(250), MS(500), S(1), MS(2500), S(5), S(10),
		S(30), S(60), S(300), S(900), S(3600),
	},
	/* Queue wait, enqueue to start: 1 s .. 1 day. */
	[HIST_QUEUE_WAIT] = {
		S(1), S(5), S(15), S(30), S(60), S(300), S(900), S(1800),
		S(3600), S(3 * 3600), S(6 * 3600), S(86400),
	},
	/* Email delay, window end to accepted: 1 min .. 2 days. */
	[HIST_EMAIL_DELAY] = {
		S(60), S(300), S(900), S(1800), S(3600), S(2 * 3600),
		S(4 * 3600), S(8 * 3600), S(12 * 3600), S(86400),
		S(36 * 3600), S(2 * 86400),
	},
	/* A wait for rate-limit tokens: 1 ms .. 1 min. */
	[HIST_RATELIMIT_WAIT] = {
		MS(1), MS(5), MS(10), MS(25), MS(50), MS(100), MS(250),
		MS(500), S(1), S(5), S(15), S(60),
	},
};

const char *const metrics_job_result_names[JOB_RESULT_N] = {
	[JOB_OK] = "ok",
	[JOB_FAILED] = "failed",
	[JOB_RETRIED] = "retried",
	[JOB_DEAD_LETTERED] = "dead_lettered",
};

const char *const metrics_email_result_names[EMAIL_RESULT_N] = {
	[EMAIL_SENT] = "sent",
	[EMAIL_DEFERRED] = "deferred",
	[EMAIL_REJECTED] = "rejected",
};

const char *const metrics_reject_class_names[REJECT_CLASS_N] = {
	[REJECT_MAILBOX] = "mailbox",
	[REJECT_POLICY] = "policy",
	[REJECT_EXPIRED] = "expired",
};

const char *const metrics_skip_reason_names[SKIP_N] = {
	[SKIP_INACTIVE] = "inactive",
	[SKIP_OPTED_OUT] = "opted_out",
	[SKIP_NO_EMAIL] = "no_email",
	[SKIP_NOTHING_NEW] = "nothing_new",
	[SKIP_ALREADY_SENT] = "already_sent",
	[SKIP_SUPPRESSED] = "suppressed",
	[SKIP_BAD_DATA] = "bad_data",
};

/* In the order of enum transport_type (config.h). */
const char *const metrics_transport_names[TRANSPORT_N] = {
	[TRANSPORT_SMTP] = "smtp",
	[TRANSPORT_AMQP] = "amqp",
	[TRANSPORT_MAILDIR] = "maildir",
};

const char *const metrics_transport_failure_names[TF_N] = {
	[TF_CONNECT] = "connect",
	[TF_TLS] = "tls",
	[TF_AUTH] = "auth",
	[TF_SENDER] = "sender",
	[TF_PROTOCOL] = "protocol",
};

#define DIM(l, v) { (l), (v), (int)(sizeof(v) / sizeof((v)[0])) }

const struct metric_desc metrics_desc[] = {
	{
		.name = "digest_jobs",
		.help = "Jobs finished by the pool's workers, by result.",
		.type = METRIC_COUNTER,
		.ndims = 1,
		.dims = { DIM("result", metrics_job_result_names) },
		.base = MC_JOBS,
	},
	{
		.name = "digest_job_duration_seconds",
		.help = "Time a worker spent on one job, from start to "
		    "acknowledgement.",
		.type = METRIC_HISTOGRAM,
		.base = MC_HIST_BASE(HIST_JOB_DURATION),
		.hist = HIST_JOB_DURATION,
	},
	{
		.name = "digest_job_queue_wait_seconds",
		.help = "Time a job waited in its queue, from enqueue to start.",
		.type = METRIC_HISTOGRAM,
		.base = MC_HIST_BASE(HIST_QUEUE_WAIT),
		.hist = HIST_QUEUE_WAIT,
	},
	{
		.name = "digest_emails",
		.help = "Emails handed to the transport, by transport and "
		    "result.",
		.type = METRIC_COUNTER,
		.ndims = 2,
		.dims = {
			DIM("transport", metrics_transport_names),
			DIM("result", metrics_email_result_names),
		},
		.base = MC_EMAILS,
	},
	{
		.name = "digest_emails_rejected",
		.help = "Recipients given up, by class: mailbox (a 5xx saying "
		    "the mailbox does not exist), policy (any other 5xx), "
		    "expired (a 4xx past smtp.defer_give_up).",
		.type = METRIC_COUNTER,
		.ndims = 1,
		.dims = { DIM("class", metrics_reject_class_names) },
		.base = MC_REJECTS,
	},
	{
		.name = "digest_email_delay_seconds",
		.help = "Time from the end of the digest's window to the "
		    "transport accepting the email.",
		.type = METRIC_HISTOGRAM,
		.base = MC_HIST_BASE(HIST_EMAIL_DELAY),
		.hist = HIST_EMAIL_DELAY,
	},
	{
		.name = "digest_ratelimit_wait_seconds",
		.help = "Time a worker waited for rate-limit tokens "
		    "(limits.rate, limits.domain_rate), per wait.",
		.type = METRIC_HISTOGRAM,
		.base = MC_HIST_BASE(HIST_RATELIMIT_WAIT),
		.hist = HIST_RATELIMIT_WAIT,
	},
	{
		.name = "digest_recipients_skipped",
		.help = "Members who got no email, by the first rule that "
		    "failed.",
		.type = METRIC_COUNTER,
		.ndims = 1,
		.dims = { DIM("reason", metrics_skip_reason_names) },
		.base = MC_SKIPPED,
	},
	{
		.name = "digest_redis_errors",
		.help = "Errors talking to Redis.",
		.type = METRIC_COUNTER,
		.base = MC_REDIS_ERRORS,
	},
	{
		.name = "digest_broker_errors",
		.help = "Errors talking to the AMQP broker that carries the "
		    "jobs (queue.backend amqp).",
		.type = METRIC_COUNTER,
		.base = MC_BROKER_ERRORS,
	},
	{
		.name = "digest_transport_errors",
		.help = "Errors of the transport itself (connection, "
		    "protocol), by transport.",
		.type = METRIC_COUNTER,
		.ndims = 1,
		.dims = { DIM("transport", metrics_transport_names) },
		.base = MC_TRANSPORT_ERRORS,
	},
	{
		.name = "digest_transport_failures",
		.help = "Errors of the transport itself, by transport and "
		    "kind: connect, tls, auth, sender (the envelope sender "
		    "refused), protocol.",
		.type = METRIC_COUNTER,
		.ndims = 2,
		.dims = {
			DIM("transport", metrics_transport_names),
			DIM("kind", metrics_transport_failure_names),
		},
		.base = MC_TRANSPORT_FAILURES,
	},
};

const int metrics_ndesc = sizeof(metrics_desc) / sizeof(metrics_desc[0]);

/*
 * Called by the supervisor once the worker is dead and reaped, so nothing
 * writes the cells any more; the zeroing makes the slot ready for reuse
 * and a second fold harmless.
 */
void
metrics_fold(uint64_t totals[MC_NCELLS], metric_cell cells[MC_NCELLS])
{
	uint64_t v;
	int i;

	for (i = 0; i < MC_NCELLS; i++) {
		v = atomic_load_explicit(&cells[i], memory_order_relaxed);
		totals[i] += v;
		atomic_store_explicit(&cells[i], 0, memory_order_relaxed);
	}
}
