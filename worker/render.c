/*
 * Rendering a digest email (SPEC 5).
 *
 * The work is split by how often it changes.  render_new loads the
 * templates and prepares what the configuration fixes (the From header,
 * the unsubscribe base URL, the HMAC key).  render_job cleans the group
 * and every post once (UTF-8 repaired, controls removed, lengths capped,
 * URLs checked), and renders and quoted-printable-encodes everything in
 * the templates that does not depend on the recipient.  render_message
 * then only writes the recipient's headers, encodes the few lines that
 * name the recipient, and copies the selected pre-encoded posts.
 *
 * That split needs the encoded pieces to join at line starts, since
 * quoted-printable output depends on the column.  render_job therefore
 * cuts the template's output into whole lines: runs of lines that never
 * change (encoded once) and the lines around a recipient value (encoded
 * per message).  A template whose {{#posts}} section does not start and
 * end on line boundaries is still correct, through the slow path: the
 * whole part rendered and encoded per message.
 *
 * Every header value is built from cleaned text: no CR, LF, NUL or other
 * control character from Redis can reach a header, and non-ASCII text
 * goes out as RFC 2047 encoded-words.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mime.h"
#include "render.h"
#include "template.h"
#include "unsub.h"
#include "util.h"

/* Caps on untrusted fields, in characters, so no post can bloat a mail. */
#define RENDER_TITLE_MAX	300
#define RENDER_EXCERPT_MAX	400
#define RENDER_AUTHOR_MAX	100
#define RENDER_GROUP_MAX	200
#define RENDER_NAME_MAX		100
#define RENDER_URL_MAX		2048	/* bytes; longer is not a link */
#define RENDER_UNSUB_URL_MAX	800

enum { PART_TEXT, PART_HTML, NPARTS };

/* A cleaned field: offset and length in the job's arena. */
struct rstr {
	size_t off, len;
};

struct rpost {
	int64_t author_id;
	struct rstr title, url, author, excerpt;
	char likes[24], comments[24];
	size_t enc_off[NPARTS], enc_len[NPARTS];	/* in tj.enc */
	size_t raw_off[NPARTS], raw_len[NPARTS];	/* in tj.raw */
};

/* A piece of a per-recipient line group: raw text, or a template node. */
struct rpiece {
	int node;		/* -1: raw text at off, len */
	size_t off, len;
};

/* Whole lines: encoded once (static) or per recipient (dyn). */
struct rchunk {
	int dyn;
	size_t off, len;	/* static: encoded bytes in tj.enc */
	size_t first, n;	/* dyn: pieces */
};

struct tjob {
	struct template *t;
	struct rbuf enc;	/* encoded static lines and posts */
	struct rbuf raw;	/* rendered text before encoding */
	struct rchunk *chunks;
	size_t nchunks, capchunks;
	struct rpiece *pieces;
	size_t npieces, cappieces;
	size_t npre;		/* chunks [0, npre) come before the posts */
	int aligned;		/* the fast path applies */
};

struct render {
	struct template *tpl[NPARTS];
	struct unsub_key *key;
	int max_posts;
	char from_domain[CONFIG_STR_MAX];
	struct rbuf from_hdr;		/* "From: ...\r\n" */
	struct rbuf unsub_base;		/* ".../unsubscribe?u=" */

	time_t date_t;			/* the second date_hdr was made for */
	char date_hdr[64];
	size_t date_len;

	/* The job in hand. */
	int have_job;
	char job_id[JOB_ID_MAX];	/* restricted to [A-Za-z0-9._-] */
	int64_t gid;
	char gid_str[24];
	char period[8];
	struct rbuf arena;		/* cleaned group and post fields */
	struct rstr group_name, group_url;
	struct rbuf subject_hdr, listid_hdr, tail_hdr, part2, close;
	struct rpost *posts;
	size_t nposts, capposts;
	size_t *sel;
	struct tjob tj[NPARTS];
	size_t fixed_len;		/* encoded bytes besides the posts */

	/* The recipient in hand, and the post being expanded. */
	const struct recipient *rc;
	struct rbuf rname;
	struct rbuf unsub_url;
	char count_str[24];
	const struct rpost *cur;
	struct rbuf scratch;
};

static const char *render_lookup(void *, int, size_t *);

/* Decimal form of v into buf (24 bytes); its length.  No printf per mail. */
static size_t
render_i64(char *buf, long long v)
{
	char tmp[24], *e = tmp + sizeof(tmp), *q = e;
	unsigned long long u;
	size_t n;

	u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		*--q = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--q = '-';
	n = (size_t)(e - q);
	memcpy(buf, q, n);
	buf[n] = '\0';
	return n;
}

static int
render_fail(char *err, size_t errlen, const char *fmt, const char *a)
{
	snprintf(err, errlen, fmt, a);
	return -1;
}

/* Parse digest.from ("Name <addr>" or "addr") into the From header. */
static int
render_from(struct render *r, const struct config *cfg, char *err,
    size_t errlen)
{
	char buf[CONFIG_STR_MAX], name[CONFIG_STR_MAX], *lt, *gt, *addr, *at;
	struct rbuf clean = { 0 };
	size_t n;

	strlcpy(buf, cfg->digest.from, sizeof(buf));
	name[0] = '\0';
	if ((lt = strchr(buf, '<')) != NULL) {
		if ((gt = strchr(lt, '>')) == NULL || gt[1] != '\0')
			return render_fail(err, errlen,
			    "digest.from: \"%s\" is not Name <address>",
			    cfg->digest.from);
		*gt = '\0';
		addr = lt + 1;
		*lt = '\0';
		n = strlen(buf);
		while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
			buf[--n] = '\0';
		lt = buf;
		while (*lt == ' ' || *lt == '\t')
			lt++;
		n = strlen(lt);
		if (n >= 2 && lt[0] == '"' && lt[n - 1] == '"') {
			lt[n - 1] = '\0';
			lt++;
		}
		strlcpy(name, lt, sizeof(name));
	} else {
		addr = buf;
		while (*addr == ' ' || *addr == '\t')
			addr++;
		n = strlen(addr);
		while (n > 0 && (addr[n - 1] == ' ' || addr[n - 1] == '\t'))
			addr[--n] = '\0';
	}
	if (mime_addr_check(addr) == -1)
		return render_fail(err, errlen,
		    "digest.from: \"%s\" has no valid address",
		    cfg->digest.from);
	at = strrchr(addr, '@');
	if (cfg->digest.from_domain[0] != '\0') {
		char probe[CONFIG_STR_MAX + 2];

		snprintf(probe, sizeof(probe), "x@%s", cfg->digest.from_domain);
		if (mime_addr_check(probe) == -1)
			return render_fail(err, errlen,
			    "digest.from: bad domain \"%s\"",
			    cfg->digest.from_domain);
		strlcpy(r->from_domain, cfg->digest.from_domain,
		    sizeof(r->from_domain));
	} else
		strlcpy(r->from_domain, at + 1, sizeof(r->from_domain));

	rbuf_add(&r->from_hdr, "From: ", 6);
	mime_clean(&clean, name, RENDER_NAME_MAX, MIME_CLEAN_ONELINE);
	if (clean.len > 0) {
		mime_header_phrase(&r->from_hdr, 6, clean.p, clean.len);
		rbuf_addc(&r->from_hdr, ' ');
	}
	rbuf_free(&clean);
	rbuf_addc(&r->from_hdr, '<');
	rbuf_adds(&r->from_hdr, addr);
	rbuf_add(&r->from_hdr, ">\r\n", 3);
	return 0;
}

static int
render_unsub_base(struct render *r, const struct config *cfg, char *err,
    size_t errlen)
{
	const char *u = cfg->digest.unsubscribe_url;
	char last;

	if (strlen(u) > RENDER_UNSUB_URL_MAX ||
	    mime_url_safe(&r->unsub_base, u, RENDER_UNSUB_URL_MAX) == -1)
		return render_fail(err, errlen, "digest.unsubscribe_url: \"%.200s\" "
		    "is not an http or https URL", u);
	/* A URL that already has a query gets its parameters with '&'. */
	last = r->unsub_base.p[r->unsub_base.len - 1];
	if (strchr(r->unsub_base.p, '?') == NULL)
		rbuf_addc(&r->unsub_base, '?');
	else if (last != '?' && last != '&')
		rbuf_addc(&r->unsub_base, '&');
	rbuf_add(&r->unsub_base, "u=", 2);
	return 0;
}

static struct template *
render_load_one(const struct config *cfg, const char *dir, const char *file,
    const char *builtin, int html, char *err, size_t errlen)
{
	char path[PATH_MAX * 2 + 32], bname[64];
	struct stat st;

	if (dir != NULL) {
		snprintf(path, sizeof(path), "%s/%s", dir, file);
		if (stat(path, &st) == 0 || errno != ENOENT)
			return template_load(path, html, err, errlen);
	}
	/* Not overridden: the built-in one. */
	snprintf(bname, sizeof(bname), "built-in %s", file);
	return template_parse(bname, builtin, strlen(builtin), html, err,
	    errlen);
}

struct render *
render_new(const struct config *cfg, char *err, size_t errlen)
{
	struct render *r;
	char dir[PATH_MAX * 2 + 2];
	const char *d = NULL;
	struct stat st;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "render: out of memory");
		return NULL;
	}
	r->max_posts = cfg->digest.max_posts > 0 ? cfg->digest.max_posts : 10;
	r->date_t = (time_t)-1;
	if (cfg->digest.template_dir[0] != '\0') {
		if (cfg->digest.template_dir[0] == '/' || cfg->dir[0] == '\0')
			strlcpy(dir, cfg->digest.template_dir, sizeof(dir));
		else
			snprintf(dir, sizeof(dir), "%s/%s", cfg->dir,
			    cfg->digest.template_dir);
		if (stat(dir, &st) == -1) {
			snprintf(err, errlen, "digest.template_dir: %s: %s", dir,
			    strerror(errno));
			goto fail;
		}
		if (!S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "digest.template_dir: %s: not a "
			    "directory", dir);
			goto fail;
		}
		d = dir;
	}
	if ((r->tpl[PART_TEXT] = render_load_one(cfg, d, "digest.txt",
	    template_builtin_text, 0, err, errlen)) == NULL ||
	    (r->tpl[PART_HTML] = render_load_one(cfg, d, "digest.html",
	    template_builtin_html, 1, err, errlen)) == NULL)
		goto fail;
	if (render_from(r, cfg, err, errlen) == -1 ||
	    render_unsub_base(r, cfg, err, errlen) == -1)
		goto fail;
	if (cfg->digest.unsubscribe_secret[0] == '\0') {
		snprintf(err, errlen, "digest.unsubscribe_secret is required");
		goto fail;
	}
	if ((r->key = unsub_key_new(cfg->digest.unsubscribe_secret)) == NULL) {
		snprintf(err, errlen, "digest.unsubscribe_secret: cannot set "
		    "up HMAC-SHA256");
		goto fail;
	}
	r->tj[PART_TEXT].t = r->tpl[PART_TEXT];
	r->tj[PART_HTML].t = r->tpl[PART_HTML];
	r->sel = calloc((size_t)r->max_posts, sizeof(*r->sel));
	if (r->sel == NULL) {
		snprintf(err, errlen, "render: out of memory");
		goto fail;
	}
	return r;
fail:
	render_free(r);
	return NULL;
}

int
render_check_config(const struct config *cfg, char *err, size_t errlen)
{
	struct render *r;

	if ((r = render_new(cfg, err, errlen)) == NULL)
		return -1;
	render_free(r);
	return 0;
}

static void
tjob_free(struct tjob *tj)
{
	rbuf_free(&tj->enc);
	rbuf_free(&tj->raw);
	free(tj->chunks);
	free(tj->pieces);
}

void
render_free(struct render *r)
{
	int k;

	if (r == NULL)
		return;
	for (k = 0; k < NPARTS; k++) {
		tjob_free(&r->tj[k]);
		template_free(r->tpl[k]);
	}
	unsub_key_free(r->key);
	rbuf_free(&r->from_hdr);
	rbuf_free(&r->unsub_base);
	rbuf_free(&r->arena);
	rbuf_free(&r->subject_hdr);
	rbuf_free(&r->listid_hdr);
	rbuf_free(&r->tail_hdr);
	rbuf_free(&r->part2);
	rbuf_free(&r->close);
	rbuf_free(&r->rname);
	rbuf_free(&r->unsub_url);
	rbuf_free(&r->scratch);
	free(r->posts);
	free(r->sel);
	free(r);
}

static int64_t
render_score(const struct post *p)
{
	int64_t s;

	/* Saturate: absurd counts from Redis must not wrap the order. */
	if (__builtin_add_overflow(p->likes, p->comments, &s))
		s = p->likes > 0 ? INT64_MAX : INT64_MIN;
	return s;
}

static int
render_post_cmp(const void *a, const void *b)
{
	const struct post *pa = a, *pb = b;
	int64_t sa = render_score(pa), sb = render_score(pb);

	if (sa != sb)
		return sa > sb ? -1 : 1;
	if (pa->posted_at != pb->posted_at)
		return pa->posted_at > pb->posted_at ? -1 : 1;
	/* A stable order for equal posts: the newer id first. */
	if (pa->id != pb->id)
		return pa->id > pb->id ? -1 : 1;
	return 0;
}

void
render_sort_posts(struct post *posts, size_t n)
{
	if (n > 1)
		qsort(posts, n, sizeof(*posts), render_post_cmp);
}

/*
 * How many of the sorted posts any recipient can need.  A recipient gets
 * the first max_posts not written by them, so a prefix in which even the
 * most prolific author leaves max_posts posts by others serves everyone;
 * a busy group's hundreds of posts are not cleaned and encoded for
 * nothing.  When one author wrote nearly everything, that is every post.
 */
static size_t
render_needed(struct render *r, const struct post *posts, size_t n)
{
	struct {
		int64_t author;
		size_t count;
	} *seen;
	size_t i, j, nseen = 0, most = 0;

	if (n <= (size_t)r->max_posts)
		return n;
	seen = wcalloc(n, sizeof(*seen));
	for (i = 0; i < n; i++) {
		if (i - most >= (size_t)r->max_posts)
			break;
		/* Few distinct authors whenever this runs long. */
		for (j = 0; j < nseen && seen[j].author != posts[i].author_id;
		    j++)
			;
		if (j == nseen) {
			seen[nseen].author = posts[i].author_id;
			seen[nseen++].count = 0;
		}
		if (++seen[j].count > most)
			most = seen[j].count;
	}
	free(seen);
	return i;
}

static struct rstr
render_field(struct rbuf *arena, const char *s, size_t maxchars,
    const char *dflt)
{
	struct rstr f;

	f.off = arena->len;
	f.len = mime_clean(arena, s, maxchars,
	    MIME_CLEAN_ONELINE | MIME_CLEAN_ELLIPSIS);
	if (f.len == 0 && dflt != NULL) {
		rbuf_adds(arena, dflt);
		f.len = strlen(dflt);
	}
	rbuf_addc(arena, '\0');
	return f;
}

static struct rstr
render_url(struct rbuf *arena, const char *url)
{
	struct rstr f;

	f.off = arena->len;
	f.len = 0;
	if (mime_url_safe(arena, url, RENDER_URL_MAX) == 0)
		f.len = arena->len - f.off;
	rbuf_addc(arena, '\0');
	return f;
}

static void
tjob_chunk(struct tjob *tj, int dyn, size_t off, size_t len)
{
	struct rchunk *c;

	if (tj->nchunks == tj->capchunks) {
		tj->capchunks = tj->capchunks ? tj->capchunks * 2 : 16;
		tj->chunks = wrealloc(tj->chunks,
		    tj->capchunks * sizeof(*tj->chunks));
	}
	c = &tj->chunks[tj->nchunks++];
	memset(c, 0, sizeof(*c));
	c->dyn = dyn;
	if (dyn)
		c->first = tj->npieces;
	else {
		c->off = tj->enc.len;
		mime_qp_encode(&tj->enc, tj->raw.p + off, len);
		c->len = tj->enc.len - c->off;
	}
}

static void
tjob_piece(struct tjob *tj, int node, size_t off, size_t len)
{
	struct rpiece *p;

	if (tj->npieces == tj->cappieces) {
		tj->cappieces = tj->cappieces ? tj->cappieces * 2 : 16;
		tj->pieces = wrealloc(tj->pieces,
		    tj->cappieces * sizeof(*tj->pieces));
	}
	p = &tj->pieces[tj->npieces++];
	p->node = node;
	p->off = off;
	p->len = len;
	tj->chunks[tj->nchunks - 1].n++;
}

/*
 * Cut the output of nodes [from, to) into chunks of whole lines: static
 * runs encoded now, and groups of lines holding a recipient value kept as
 * pieces for render_message.  Returns 1 if the output ends at the start of
 * a line, so that what follows may be joined to it already encoded.
 */
static int
tjob_build(struct render *r, struct tjob *tj, size_t from, size_t to)
{
	const struct template *t = tj->t;
	size_t i, acc, before, k;
	const char *nl;
	int in_group = 0;

	acc = tj->raw.len;
	for (i = from; i < to; i = template_next(t, i)) {
		if (!t->nodes[i].dyn) {
			before = tj->raw.len;
			template_expand(t, i, template_next(t, i), render_lookup,
			    r, &tj->raw);
			if (!in_group)
				continue;
			nl = memchr(tj->raw.p + before, '\n',
			    tj->raw.len - before);
			if (nl == NULL) {
				tjob_piece(tj, -1, before, tj->raw.len - before);
				continue;
			}
			k = (size_t)(nl - tj->raw.p) + 1;
			tjob_piece(tj, -1, before, k - before);
			in_group = 0;
			acc = k;
			continue;
		}
		if (!in_group) {
			k = tj->raw.len;
			while (k > acc && tj->raw.p[k - 1] != '\n')
				k--;
			if (k > acc)
				tjob_chunk(tj, 0, acc, k - acc);
			tjob_chunk(tj, 1, 0, 0);
			if (tj->raw.len > k)
				tjob_piece(tj, -1, k, tj->raw.len - k);
			in_group = 1;
		}
		tjob_piece(tj, (int)i, 0, 0);
	}
	if (in_group)
		return 0;
	if (tj->raw.len > acc) {
		tjob_chunk(tj, 0, acc, tj->raw.len - acc);
		return tj->raw.p[tj->raw.len - 1] == '\n';
	}
	return 1;
}

static void
tjob_prepare(struct render *r, struct tjob *tj, int part)
{
	const struct template *t = tj->t;
	size_t j, pend = t->nodes[t->posts].end;
	struct rpost *p;
	int aligned;

	rbuf_reset(&tj->enc);
	rbuf_reset(&tj->raw);
	tj->nchunks = tj->npieces = 0;
	aligned = tjob_build(r, tj, 0, t->posts);
	tj->npre = tj->nchunks;
	for (j = 0; j < r->nposts; j++) {
		p = &r->posts[j];
		r->cur = p;
		p->raw_off[part] = tj->raw.len;
		template_expand(t, t->posts + 1, pend, render_lookup, r,
		    &tj->raw);
		p->raw_len[part] = tj->raw.len - p->raw_off[part];
		if (p->raw_len[part] > 0 && tj->raw.p[tj->raw.len - 1] != '\n')
			aligned = 0;
		p->enc_off[part] = tj->enc.len;
		mime_qp_encode(&tj->enc, tj->raw.p + p->raw_off[part],
		    p->raw_len[part]);
		p->enc_len[part] = tj->enc.len - p->enc_off[part];
	}
	r->cur = NULL;
	(void)tjob_build(r, tj, pend, t->nnodes);
	tj->aligned = aligned;
}

static uint64_t
render_fnv(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

int
render_job(struct render *r, const struct job *job,
    const struct group_info *g, struct post *posts, size_t nposts)
{
	char boundary[64], num[24];
	struct rbuf subj = { 0 };
	size_t i, col;
	int k;

	if (r == NULL || job == NULL || g == NULL)
		return -1;
	r->have_job = 0;

	/* Ids go into Message-ID and headers: keep them to dot-atom text. */
	for (i = 0; job->job_id[i] != '\0' && i + 1 < sizeof(r->job_id); i++) {
		char c = job->job_id[i];

		r->job_id[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '-') ? c : '_';
	}
	r->job_id[i] = '\0';
	if (i == 0)
		strlcpy(r->job_id, "job", sizeof(r->job_id));
	for (i = 0; job->period[i] != '\0' && i + 1 < sizeof(r->period); i++) {
		char c = job->period[i];

		r->period[i] = (c >= 'a' && c <= 'z') ? c : '_';
	}
	r->period[i] = '\0';
	r->gid = g->id;
	snprintf(r->gid_str, sizeof(r->gid_str), "%lld", (long long)g->id);

	rbuf_reset(&r->arena);
	snprintf(num, sizeof(num), "Group %lld", (long long)g->id);
	r->group_name = render_field(&r->arena, g->name, RENDER_GROUP_MAX, num);
	r->group_url = render_url(&r->arena, g->url);

	render_sort_posts(posts, nposts);
	nposts = render_needed(r, posts, nposts);
	if (nposts > r->capposts) {
		r->capposts = nposts;
		r->posts = wrealloc(r->posts, nposts * sizeof(*r->posts));
	}
	r->nposts = nposts;
	for (i = 0; i < nposts; i++) {
		struct rpost *p = &r->posts[i];

		memset(p, 0, sizeof(*p));
		p->author_id = posts[i].author_id;
		p->title = render_field(&r->arena, posts[i].title,
		    RENDER_TITLE_MAX, "(no title)");
		p->url = render_url(&r->arena, posts[i].url);
		p->author = render_field(&r->arena, posts[i].author_name,
		    RENDER_AUTHOR_MAX, "someone");
		p->excerpt = render_field(&r->arena, posts[i].excerpt,
		    RENDER_EXCERPT_MAX, NULL);
		snprintf(p->likes, sizeof(p->likes), "%lld",
		    (long long)posts[i].likes);
		snprintf(p->comments, sizeof(p->comments), "%lld",
		    (long long)posts[i].comments);
	}

	/* The headers that are the same for every recipient. */
	rbuf_reset(&r->subject_hdr);
	rbuf_add(&r->subject_hdr, "Subject: ", 9);
	rbuf_adds(&subj, "Your ");
	rbuf_adds(&subj, r->period);
	rbuf_adds(&subj, " digest: ");
	rbuf_add(&subj, r->arena.p + r->group_name.off, r->group_name.len);
	mime_header_text(&r->subject_hdr, 9, subj.p, subj.len);
	rbuf_add(&r->subject_hdr, "\r\n", 2);
	rbuf_free(&subj);

	rbuf_reset(&r->listid_hdr);
	rbuf_add(&r->listid_hdr, "List-Id: ", 9);
	col = mime_header_phrase(&r->listid_hdr, 9,
	    r->arena.p + r->group_name.off, r->group_name.len);
	if (col + 4 + strlen(r->gid_str) + strlen(r->from_domain) > 76)
		rbuf_add(&r->listid_hdr, "\r\n <", 4);
	else
		rbuf_add(&r->listid_hdr, " <", 2);
	rbuf_adds(&r->listid_hdr, r->gid_str);
	rbuf_addc(&r->listid_hdr, '.');
	rbuf_adds(&r->listid_hdr, r->from_domain);
	rbuf_add(&r->listid_hdr, ">\r\n", 3);

	/*
	 * "=_" cannot occur in quoted-printable or base64 output, so a
	 * boundary starting with it never meets the body.
	 */
	snprintf(boundary, sizeof(boundary), "=_digest_%016llx",
	    (unsigned long long)render_fnv(r->job_id));
	rbuf_reset(&r->tail_hdr);
	rbuf_adds(&r->tail_hdr, "List-Unsubscribe-Post: "
	    "List-Unsubscribe=One-Click\r\n");
	rbuf_adds(&r->tail_hdr, "X-Digest-Job: ");
	rbuf_adds(&r->tail_hdr, r->job_id);
	rbuf_adds(&r->tail_hdr, "\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/alternative;\r\n boundary=\"");
	rbuf_adds(&r->tail_hdr, boundary);
	rbuf_adds(&r->tail_hdr, "\"\r\n\r\nThis is a multi-part message in "
	    "MIME format.\r\n\r\n--");
	rbuf_adds(&r->tail_hdr, boundary);
	rbuf_adds(&r->tail_hdr, "\r\nContent-Type: text/plain; charset=UTF-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	rbuf_reset(&r->part2);
	rbuf_adds(&r->part2, "\r\n--");
	rbuf_adds(&r->part2, boundary);
	rbuf_adds(&r->part2, "\r\nContent-Type: text/html; charset=UTF-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	rbuf_reset(&r->close);
	rbuf_adds(&r->close, "\r\n--");
	rbuf_adds(&r->close, boundary);
	rbuf_adds(&r->close, "--\r\n");

	r->fixed_len = 0;
	for (k = 0; k < NPARTS; k++) {
		tjob_prepare(r, &r->tj[k], k);
		r->fixed_len += r->tj[k].enc.len;
		for (i = 0; i < r->nposts; i++)
			r->fixed_len -= r->posts[i].enc_len[k];
	}
	r->have_job = 1;
	return 0;
}

static const char *
render_lookup(void *arg, int var, size_t *len)
{
	struct render *r = arg;
	const struct rstr *f;

	switch (var) {
	case TV_GROUP_NAME:
		f = &r->group_name;
		break;
	case TV_GROUP_URL:
		f = &r->group_url;
		break;
	case TV_GROUP_ID:
		*len = strlen(r->gid_str);
		return r->gid_str;
	case TV_PERIOD:
		*len = strlen(r->period);
		return r->period;
	case TV_RECIPIENT_NAME:
		*len = r->rname.len;
		return r->rname.p;
	case TV_RECIPIENT_EMAIL:
		if (r->rc == NULL || r->rc->email == NULL)
			return NULL;
		*len = strlen(r->rc->email);
		return r->rc->email;
	case TV_UNSUBSCRIBE_URL:
		*len = r->unsub_url.len;
		return r->unsub_url.p;
	case TV_POST_COUNT:
		*len = strlen(r->count_str);
		return r->count_str;
	case TV_LIKES:
		if (r->cur == NULL)
			return NULL;
		*len = strlen(r->cur->likes);
		return r->cur->likes;
	case TV_COMMENTS:
		if (r->cur == NULL)
			return NULL;
		*len = strlen(r->cur->comments);
		return r->cur->comments;
	case TV_TITLE:
	case TV_URL:
	case TV_AUTHOR:
	case TV_EXCERPT:
		if (r->cur == NULL)
			return NULL;
		f = var == TV_TITLE ? &r->cur->title : var == TV_URL ?
		    &r->cur->url : var == TV_AUTHOR ? &r->cur->author :
		    &r->cur->excerpt;
		break;
	default:
		return NULL;
	}
	*len = f->len;
	return r->arena.p + f->off;
}

static void
render_date(struct render *r)
{
	static const char days[7][4] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
	};
	static const char months[12][4] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
		"Oct", "Nov", "Dec"
	};
	time_t now = time(NULL);
	struct tm tm;
	int n;

	if (now == r->date_t)
		return;
	/* Names by hand: strftime's %a and %b follow the locale. */
	gmtime_r(&now, &tm);
	n = snprintf(r->date_hdr, sizeof(r->date_hdr),
	    "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday],
	    tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
	r->date_len = n > 0 && (size_t)n < sizeof(r->date_hdr) ? (size_t)n : 0;
	r->date_t = now;
}

static void
render_part(struct render *r, struct tjob *tj, size_t nsel, struct rbuf *out)
{
	const struct template *t = tj->t;
	const struct rchunk *c;
	const struct rpiece *pc;
	size_t i, j, part = (size_t)(tj - r->tj);

	if (!tj->aligned) {
		/* Slow path: the whole part, rendered and encoded here. */
		rbuf_reset(&r->scratch);
		template_expand(t, 0, t->posts, render_lookup, r, &r->scratch);
		for (i = 0; i < nsel; i++) {
			const struct rpost *p = &r->posts[r->sel[i]];

			rbuf_add(&r->scratch, tj->raw.p + p->raw_off[part],
			    p->raw_len[part]);
		}
		template_expand(t, t->nodes[t->posts].end, t->nnodes,
		    render_lookup, r, &r->scratch);
		mime_qp_encode(out, r->scratch.p, r->scratch.len);
		return;
	}
	for (i = 0; i < tj->nchunks; i++) {
		if (i == tj->npre)
			for (j = 0; j < nsel; j++) {
				const struct rpost *p = &r->posts[r->sel[j]];

				rbuf_add(out, tj->enc.p + p->enc_off[part],
				    p->enc_len[part]);
			}
		c = &tj->chunks[i];
		if (!c->dyn) {
			rbuf_add(out, tj->enc.p + c->off, c->len);
			continue;
		}
		rbuf_reset(&r->scratch);
		for (j = c->first; j < c->first + c->n; j++) {
			pc = &tj->pieces[j];
			if (pc->node < 0)
				rbuf_add(&r->scratch, tj->raw.p + pc->off,
				    pc->len);
			else
				template_expand(t, (size_t)pc->node,
				    template_next(t, (size_t)pc->node),
				    render_lookup, r, &r->scratch);
		}
		mime_qp_encode(out, r->scratch.p, r->scratch.len);
	}
	if (tj->npre == tj->nchunks)
		for (j = 0; j < nsel; j++) {
			const struct rpost *p = &r->posts[r->sel[j]];

			rbuf_add(out, tj->enc.p + p->enc_off[part],
			    p->enc_len[part]);
		}
}

int
render_message(struct render *r, const struct recipient *rc, struct rbuf *out,
    char *message_id, size_t midlen)
{
	char token[UNSUB_TOKEN_LEN + 1], uid[24];
	size_t i, nsel = 0, ulen, ulen2;

	if (r == NULL || !r->have_job || rc == NULL ||
	    mime_addr_check(rc->email) == -1)
		return -1;
	for (i = 0; i < r->nposts && nsel < (size_t)r->max_posts; i++)
		if (r->posts[i].author_id != rc->uid)
			r->sel[nsel++] = i;
	if (nsel == 0)
		return 0;
	if (unsub_key_token(r->key, rc->uid, r->gid, token) == -1)
		return -1;

	r->rc = rc;
	ulen = render_i64(uid, (long long)rc->uid);
	render_i64(r->count_str, (long long)nsel);
	rbuf_reset(&r->rname);
	mime_clean(&r->rname, rc->name, RENDER_NAME_MAX,
	    MIME_CLEAN_ONELINE | MIME_CLEAN_ELLIPSIS);
	rbuf_reset(&r->unsub_url);
	rbuf_add(&r->unsub_url, r->unsub_base.p, r->unsub_base.len);
	rbuf_add(&r->unsub_url, uid, ulen);
	rbuf_add(&r->unsub_url, "&g=", 3);
	rbuf_adds(&r->unsub_url, r->gid_str);
	rbuf_add(&r->unsub_url, "&t=", 3);
	rbuf_add(&r->unsub_url, token, UNSUB_TOKEN_LEN);

	/* One growth at most: the headers, the fixed lines, the posts. */
	ulen2 = 4096 + r->fixed_len;
	for (i = 0; i < nsel; i++)
		ulen2 += r->posts[r->sel[i]].enc_len[PART_TEXT] +
		    r->posts[r->sel[i]].enc_len[PART_HTML];
	rbuf_reserve(out, ulen2);
	rbuf_add(out, r->from_hdr.p, r->from_hdr.len);
	rbuf_add(out, "To: ", 4);
	if (r->rname.len > 0) {
		i = mime_header_phrase(out, 4, r->rname.p, r->rname.len);
		if (i + strlen(rc->email) + 3 > 78)
			rbuf_add(out, "\r\n <", 4);
		else
			rbuf_add(out, " <", 2);
	} else
		rbuf_addc(out, '<');
	rbuf_adds(out, rc->email);
	rbuf_add(out, ">\r\n", 3);
	rbuf_add(out, r->subject_hdr.p, r->subject_hdr.len);
	render_date(r);
	rbuf_add(out, r->date_hdr, r->date_len);
	rbuf_add(out, "Message-ID: <", 13);
	i = out->len;
	rbuf_adds(out, r->job_id);
	rbuf_addc(out, '.');
	rbuf_add(out, uid, ulen);
	rbuf_addc(out, '@');
	rbuf_adds(out, r->from_domain);
	if (message_id != NULL && midlen > 0) {
		size_t n = out->len - i < midlen - 1 ? out->len - i : midlen - 1;

		memcpy(message_id, out->p + i, n);
		message_id[n] = '\0';
	}
	rbuf_add(out, ">\r\n", 3);
	rbuf_add(out, r->listid_hdr.p, r->listid_hdr.len);
	rbuf_add(out, "List-Unsubscribe: <", 19);
	rbuf_add(out, r->unsub_url.p, r->unsub_url.len);
	rbuf_add(out, ">\r\n", 3);
	rbuf_add(out, r->tail_hdr.p, r->tail_hdr.len);
	render_part(r, &r->tj[PART_TEXT], nsel, out);
	rbuf_add(out, r->part2.p, r->part2.len);
	render_part(r, &r->tj[PART_HTML], nsel, out);
	rbuf_add(out, r->close.p, r->close.len);
	r->rc = NULL;
	return (int)nsel;
}
