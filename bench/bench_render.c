/*
 * Benchmark of the digest renderer: realistic groups (10 to 14 posts in
 * the window, some titles, names and excerpts in non-ASCII scripts,
 * excerpts of a hundred characters or so, about 7 KB per email), one
 * render_job per group and render_message for many recipients, as a
 * worker does.  Prints emails/s and microseconds of CPU per email.
 *
 *   build/bench/bench_render [-p] [-s seconds] [-g groups] [-t template_dir]
 *
 * -p prints the first email and exits, to look at what is measured.
 *
 * The last line is logfmt for the benchmark runner.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "render.h"

#define MAX_POSTS_PER_GROUP 14

static const char *titles[] = {
	"Weekend sourdough bake: what went right and what did not",
	"Caf\xc3\xa9 recommendations near the old town square?",
	"\xe6\x98\xa5\xe3\x81\xae\xe3\x83\x94\xe3\x82\xaf\xe3\x83\x8b"
	"\xe3\x83\x83\xe3\x82\xaf\xe3\x81\xae\xe8\xa8\x88\xe7\x94\xbb",
	"Meeting notes from Thursday & next steps for the fundraiser",
	"Which tent for a rainy week in the Highlands?",
	"Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen: Fotos vom Treffen",
	"How do you keep a basil plant alive indoors in winter",
	"Show and tell: my first <b>hand-bound</b> notebook",
	"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xb2\xd1\x81"
	"\xd0\xb5\xd0\xbc! Introductions thread",
	"Looking for a running partner on Sunday mornings",
	"Book club: chapter 7 discussion (spoilers)",
	"Lost and found: blue umbrella after the last meetup",
};

static const char *authors[] = { "Alice Martin", "Bj\xc3\xb6rn Svensson",
	"\xe7\x94\xb0\xe4\xb8\xad \xe5\xa4\xaa\xe9\x83\x8e", "Chlo\xc3\xa9",
	"David O'Neil", "Eve", "Fran\xc3\xa7ois", "Grace Hopper" };

static const char *excerpts[] = {
	"I tried a longer cold retard this time, about 16 hours in the fridge, "
	"and the crumb came out much more open.",
	"Nous cherchons un caf\xc3\xa9 calme pour les r\xc3\xa9unions du "
	"mardi, avec une grande table. Des id\xc3\xa9" "es ?",
	"Thanks to everyone who came along! Please sign up in the sheet before "
	"Friday & say which evenings you can help.",
	"\xe6\x9d\xa5\xe9\x80\xb1\xe3\x81\xae\xe5\x9c\x9f\xe6\x9b\x9c\xe6\x97"
	"\xa5\xe3\x81\xab\xe5\x85\xac\xe5\x9c\x92\xe3\x81\xa7\xe3\x81\x8a\xe8"
	"\x8a\xb1\xe8\xa6\x8b\xe3\x82\x92\xe3\x81\x97\xe3\x81\xbe\xe3\x81\x99"
	"\xe3\x80\x82 Everyone is welcome, bring a blanket.",
	"My old one leaked at the seams after two nights. Any experience with "
	"tunnel tents with a proper porch?",
};

static const char *names[] = { "Ann", NULL, "J\xc3\xb6rg M\xc3\xbcller",
	"Li Wei", NULL, "Sam \"Sammy\" Smith", "Zo\xc3\xab" };

static double
clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char *argv[])
{
	struct config *cfg;
	struct render *r;
	struct job job;
	struct group_info g;
	struct post posts[MAX_POSTS_PER_GROUP];
	struct recipient rc;
	struct rbuf out = { 0 };
	char err[512], mid[256], gname[128], email[64], urls[MAX_POSTS_PER_GROUP][64];
	double seconds = 2.0, t0, c0, wall, cpu, job_cpu = 0, c1;
	long long emails = 0, bytes = 0, jobs = 0, uid = 1;
	int ngroups = 50, ch, i, n, print = 0;
	const char *tdir = NULL;

	while ((ch = getopt(argc, argv, "ps:g:t:")) != -1) {
		switch (ch) {
		case 'p':
			print = 1;
			break;
		case 's':
			seconds = atof(optarg);
			break;
		case 'g':
			ngroups = atoi(optarg);
			break;
		case 't':
			tdir = optarg;
			break;
		default:
			fprintf(stderr, "usage: bench_render [-p] [-s seconds] "
			    "[-g groups] [-t template_dir]\n");
			return 2;
		}
	}
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
		return 1;
	strcpy(cfg->digest.from, "Groups <digest@example.com>");
	strcpy(cfg->digest.from_addr, "digest@example.com");
	strcpy(cfg->digest.from_domain, "example.com");
	strcpy(cfg->digest.unsubscribe_url, "https://example.com/unsubscribe");
	strcpy(cfg->digest.unsubscribe_secret, "bench-secret-0123456789");
	cfg->digest.max_posts = 10;
	if (tdir != NULL)
		snprintf(cfg->digest.template_dir,
		    sizeof(cfg->digest.template_dir), "%s", tdir);
	if ((r = render_new(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "render_new: %s\n", err);
		return 1;
	}

	t0 = clock_s(CLOCK_MONOTONIC);
	c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	do {
		int gid = (int)(jobs % ngroups) + 1;

		memset(&job, 0, sizeof(job));
		snprintf(job.job_id, sizeof(job.job_id), "daily.1764374400.%d.0",
		    gid);
		strcpy(job.period, "daily");
		job.group_id = gid;
		snprintf(gname, sizeof(gname), gid % 3 == 0 ?
		    "Caf\xc3\xa9 lovers of district %d" :
		    "Weekend hikers & bakers #%d", gid);
		g.id = gid;
		g.name = gname;
		g.url = "https://example.com/groups/cafe-lovers";
		g.members = 5000;
		n = 10 + gid % 5;
		for (i = 0; i < n; i++) {
			memset(&posts[i], 0, sizeof(posts[i]));
			posts[i].id = gid * 100 + i;
			posts[i].posted_at = 1764300000 + i * 37;
			posts[i].author_id = 1 + (gid * 7 + i * 13) % 5000;
			posts[i].likes = (gid + i * 5) % 23;
			posts[i].comments = (gid * 3 + i) % 9;
			posts[i].title = titles[(gid + i) % 12];
			snprintf(urls[i], sizeof(urls[i]),
			    "https://example.com/g/%d/posts/%d", gid,
			    (int)posts[i].id);
			posts[i].url = i == 3 ? "javascript:alert(1)" : urls[i];
			posts[i].author_name = authors[(gid + i) % 8];
			posts[i].excerpt = excerpts[(gid + i) % 5];
		}
		c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
		if (render_job(r, &job, &g, posts, (size_t)n) == -1) {
			fprintf(stderr, "render_job failed\n");
			return 1;
		}
		job_cpu += clock_s(CLOCK_PROCESS_CPUTIME_ID) - c1;
		jobs++;
		/* A batch of recipients per job, as digest.c sends them. */
		for (i = 0; i < 500; i++, uid++) {
			snprintf(email, sizeof(email), "member%lld@example.org",
			    uid);
			rc.uid = uid % 5000 + 1;
			rc.email = email;
			rc.name = names[uid % 7];
			rc.locale = NULL;
			rbuf_reset(&out);
			if (render_message(r, &rc, &out, mid, sizeof(mid)) < 0) {
				fprintf(stderr, "render_message failed\n");
				return 1;
			}
			if (print) {
				fwrite(out.p, 1, out.len, stdout);
				return 0;
			}
			emails++;
			bytes += (long long)out.len;
		}
	} while (clock_s(CLOCK_MONOTONIC) - t0 < seconds);
	wall = clock_s(CLOCK_MONOTONIC) - t0;
	cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;

	printf("bench_render: %lld emails in %.2f s (%.2f s CPU), %lld jobs\n",
	    emails, wall, cpu, jobs);
	printf("  %.0f emails/s per core, %.2f us CPU per email, %.0f bytes "
	    "per email, %.1f us per render_job\n", (double)emails / cpu,
	    cpu * 1e6 / (double)emails, (double)bytes / (double)emails,
	    job_cpu * 1e6 / (double)jobs);
	printf("benchmark=render emails=%lld seconds=%.3f cpu_seconds=%.3f "
	    "emails_per_sec=%.0f us_per_email=%.3f avg_bytes=%.0f "
	    "job_us=%.1f\n", emails, wall, cpu, (double)emails / cpu,
	    cpu * 1e6 / (double)emails, (double)bytes / (double)emails,
	    job_cpu * 1e6 / (double)jobs);
	rbuf_free(&out);
	render_free(r);
	free(cfg);
	return 0;
}
