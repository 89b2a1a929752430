/*
 * Rendering a digest email (docs/design.md#recipients-and-the-email).
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
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "log.h"
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
#define RENDER_SUBJECT_MAX	300
#define RENDER_LOCALE_MAX	36	/* "zh_hant_tw", with room */
#define RENDER_LOCALES_MAX	256

enum { PART_TEXT, PART_HTML, NPARTS };

/* A cleaned field: offset and length in the job's arena. */
struct rstr {
	size_t off, len;
};

struct rpost {
	int64_t author_id;
	struct rstr title, url, author, excerpt;
	char likes[24], comments[24];
};

/* A post as one template renders it: its bytes in the tjob's buffers. */
struct tpost {
	size_t enc_off, enc_len;	/* in tj.enc */
	size_t raw_off, raw_len;	/* in tj.raw */
};

/* A piece of a per-recipient line group: raw text, or a template node. */
struct rpiece {
	int node;		/* -1: raw text at off, len */
	size_t off, len;
};

/* Whole lines: encoded once (static) or per recipient (dyn). */
struct rchunk {
	int dyn;
	int memo;		/* dyn: tj.memo[] holds its last encoding */
	size_t off, len;	/* static: encoded bytes in tj.enc */
	size_t first, n;	/* dyn: pieces */
};

/*
 * A dyn chunk's last text and its encoding: the next recipient's is often
 * the same (a line with the post count, a greeting without a name), and
 * is then copied rather than encoded again.
 */
struct rmemo {
	struct rbuf raw;
	struct rbuf enc;
};

struct tjob {
	struct template *t;
	struct rbuf enc;	/* encoded static lines and posts */
	struct rbuf raw;	/* rendered text before encoding */
	struct rchunk *chunks;
	size_t nchunks, capchunks;
	struct rpiece *pieces;
	size_t npieces, cappieces;
	struct tpost *tp;	/* the job's posts, in this template */
	size_t captp;
	size_t npre;		/* chunks [0, npre) come before the posts */
	int aligned;		/* the fast path applies */
	struct rmemo *memo;	/* by chunk */
	size_t capmemo;
};

/*
 * A set of templates: the default one (template_dir itself, else built
 * in), or a language's (template_dir/{locale}/), whose missing files are
 * those of its parent language (de_at: de) or of the default set.  A set
 * is prepared for a job the first time one of its readers is met.
 */
struct tset {
	char locale[RENDER_LOCALE_MAX];	/* lowercase, '_'; "" for default */
	struct template *tpl[NPARTS];
	struct template *subj;
	int own;			/* bit k: tpl[k] is its own; NPARTS: subj */
	struct tjob tj[NPARTS];
	unsigned long gen;		/* the job it is prepared for */
	size_t fixed_len;		/* encoded bytes besides the posts */
	int subj_dyn;			/* the subject names the recipient */
	struct rbuf subject_hdr;	/* else: "Subject: ...\r\n" */
};

struct render {
	struct tset *sets;		/* sets[0]: the default */
	size_t nsets;
	unsigned long gen;		/* counts jobs */
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
	struct rbuf listid_hdr, tail_hdr, part2, close;
	struct rpost *posts;
	size_t nposts, capposts;
	size_t *sel;

	/* The recipient in hand, and the post being expanded. */
	const struct recipient *rc;
	struct rbuf rname;
	struct rbuf unsub_url;
	char count_str[24];
	const struct rpost *cur;
	struct rbuf scratch;
	struct rbuf subj_raw, subj_clean;
	char addr[ADDRESS_MAX + 2];	/* the address in punycode */
	const char *rcpt;		/* the last message's envelope address */
};

static const char *render_lookup(void *, int, size_t *);
static void render_set_prepare(struct render *, struct tset *);

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

static const struct {
	const char *file;
	const char *builtin;
	int html;
	int line_only;
} render_files[NPARTS + 1] = {
	[PART_TEXT] = { "digest.txt", template_builtin_text, 0, 0 },
	[PART_HTML] = { "digest.html", template_builtin_html, 1, 0 },
	[NPARTS] = { "subject.txt", template_builtin_subject, 0, 1 },
};

/*
 * Load file k of dir (NULL: the built-in one).  NULL with *absent set
 * when dir has no such file, or NULL with err when it is broken.
 */
static struct template *
render_load_one(const char *dir, int k, int *absent, char *err,
    size_t errlen)
{
	char path[PATH_MAX * 2 + 64], bname[64];
	struct stat st;

	*absent = 0;
	if (dir != NULL) {
		snprintf(path, sizeof(path), "%s/%s", dir, render_files[k].file);
		if (stat(path, &st) == 0 || errno != ENOENT)
			return template_load(path, render_files[k].html,
			    render_files[k].line_only, err, errlen);
		*absent = 1;
		return NULL;
	}
	snprintf(bname, sizeof(bname), "built-in %s", render_files[k].file);
	if (render_files[k].line_only)
		return template_parse_line(bname, render_files[k].builtin,
		    strlen(render_files[k].builtin), err, errlen);
	return template_parse(bname, render_files[k].builtin,
	    strlen(render_files[k].builtin), render_files[k].html, err,
	    errlen);
}

static struct template **
render_set_tpl(struct tset *set, int k)
{
	return k == NPARTS ? &set->subj : &set->tpl[k];
}

/*
 * Normalise a locale for matching: lowercase, '-' as '_'.  With check,
 * -1 unless it looks like a language tag ("de", "pt_BR", "zh-Hant-TW"),
 * so that no other directory of template_dir is taken for one.
 */
static int
render_locale_norm(const char *in, char *out, size_t outlen, int check)
{
	size_t i, sub = 0, nsub = 0;
	char c;

	for (i = 0; in[i] != '\0'; i++) {
		if (i + 1 >= outlen)
			return -1;
		c = in[i];
		if (c == '-')
			c = '_';
		else if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[i] = c;
		if (!check)
			continue;
		if (c == '_') {
			/* The language: 2 or 3 letters; a subtag: 1 to 8. */
			if (sub == 0 || (nsub == 0 && sub < 2) || sub > 8 ||
			    (nsub == 0 && sub > 3))
				return -1;
			nsub++;
			sub = 0;
		} else if ((c >= 'a' && c <= 'z') || (nsub > 0 && c >= '0' &&
		    c <= '9'))
			sub++;
		else
			return -1;
	}
	out[i] = '\0';
	if (check && (sub == 0 || sub > 8 || (nsub == 0 && (sub < 2 ||
	    sub > 3))))
		return -1;
	return 0;
}

static int
render_locale_cmp(const void *a, const void *b)
{
	const char *sa = *(const char *const *)a, *sb = *(const char *const *)b;
	size_t la = strlen(sa), lb = strlen(sb);

	/* Parents first: "de" before "de_at". */
	return la != lb ? (la < lb ? -1 : 1) : strcmp(sa, sb);
}

/* The set of a normalised locale, its parent's, or the default one. */
static struct tset *
render_set_find(struct render *r, char *loc)
{
	char *cut;
	size_t i;

	for (;;) {
		for (i = 1; i < r->nsets; i++)
			if (strcmp(r->sets[i].locale, loc) == 0)
				return &r->sets[i];
		if ((cut = strrchr(loc, '_')) == NULL)
			return &r->sets[0];
		*cut = '\0';
	}
}

/*
 * Load template_dir/{locale}/ for each directory named like a locale.
 * The list is read once, here: a message never touches the disk.
 */
static int
render_load_locales(struct render *r, const char *dir, char *err,
    size_t errlen)
{
	char *names[RENDER_LOCALES_MAX], norm[RENDER_LOCALE_MAX];
	char sub[PATH_MAX * 2 + 264];
	struct dirent *de;
	struct tset *set, *parent;
	size_t n = 0, i;
	struct stat st;
	DIR *d;
	int k, absent, rc = -1;

	if ((d = opendir(dir)) == NULL) {
		snprintf(err, errlen, "digest.template_dir: %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (render_locale_norm(de->d_name, norm, sizeof(norm), 1) == -1)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
		if (stat(sub, &st) == -1 || !S_ISDIR(st.st_mode))
			continue;
		if (n == RENDER_LOCALES_MAX) {
			snprintf(err, errlen, "digest.template_dir: %s: more "
			    "than %d languages", dir, RENDER_LOCALES_MAX);
			goto out;
		}
		if ((names[n] = strdup(de->d_name)) == NULL)
			goto oom;
		n++;
	}
	qsort(names, n, sizeof(names[0]), render_locale_cmp);
	if ((r->sets = realloc(r->sets, (n + 1) * sizeof(*r->sets))) == NULL)
		goto oom;
	for (i = 0; i < n; i++) {
		render_locale_norm(names[i], norm, sizeof(norm), 0);
		parent = render_set_find(r, norm);
		render_locale_norm(names[i], norm, sizeof(norm), 0);
		if (parent != &r->sets[0] && strcmp(parent->locale, norm) == 0) {
			snprintf(err, errlen, "digest.template_dir: %s: two "
			    "directories for language %s", dir, names[i]);
			goto out;
		}
		set = &r->sets[r->nsets];
		memset(set, 0, sizeof(*set));
		r->nsets++;
		strlcpy(set->locale, norm, sizeof(set->locale));
		snprintf(sub, sizeof(sub), "%s/%s", dir, names[i]);
		for (k = 0; k <= NPARTS; k++) {
			struct template *t;

			t = render_load_one(sub, k, &absent, err, errlen);
			if (t == NULL && !absent)
				goto out;
			if (t != NULL) {
				t->plural = template_plural_rule(norm);
				set->own |= 1 << k;
			} else
				t = *render_set_tpl(parent, k);
			*render_set_tpl(set, k) = t;
		}
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "render: out of memory");
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	closedir(d);
	return rc;
}

/* The set for a recipient's locale (from Redis: only compared). */
static struct tset *
render_set_for(struct render *r, const char *locale)
{
	char norm[RENDER_LOCALE_MAX];

	if (r->nsets == 1 || locale == NULL || locale[0] == '\0' ||
	    render_locale_norm(locale, norm, sizeof(norm), 0) == -1)
		return &r->sets[0];
	return render_set_find(r, norm);
}

struct render *
render_new(const struct config *cfg, char *err, size_t errlen)
{
	struct render *r;
	char dir[PATH_MAX * 2 + 2];
	const char *d = NULL;
	struct stat st;
	int k, absent;

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
	if ((r->sets = calloc(1, sizeof(*r->sets))) == NULL) {
		snprintf(err, errlen, "render: out of memory");
		goto fail;
	}
	r->nsets = 1;
	/* The default set: template_dir's own files, else the built-in. */
	for (k = 0; k <= NPARTS; k++) {
		struct template *t = NULL;

		if (d != NULL && (t = render_load_one(d, k, &absent, err,
		    errlen)) == NULL && !absent)
			goto fail;
		if (t == NULL && (t = render_load_one(NULL, k, &absent, err,
		    errlen)) == NULL)
			goto fail;
		*render_set_tpl(&r->sets[0], k) = t;
		r->sets[0].own |= 1 << k;
	}
	if (d != NULL && render_load_locales(r, d, err, errlen) == -1)
		goto fail;
	if (render_from(r, cfg, err, errlen) == -1 ||
	    render_unsub_base(r, cfg, err, errlen) == -1 ||
	    address_verp_check(cfg->smtp.envelope_from, err, errlen) == -1)
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
	for (size_t i = 0; i < r->nsets; i++)
		for (k = 0; k < NPARTS; k++)
			r->sets[i].tj[k].t = r->sets[i].tpl[k];
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
	size_t i;

	rbuf_free(&tj->enc);
	rbuf_free(&tj->raw);
	free(tj->chunks);
	free(tj->pieces);
	free(tj->tp);
	for (i = 0; i < tj->capmemo; i++) {
		rbuf_free(&tj->memo[i].raw);
		rbuf_free(&tj->memo[i].enc);
	}
	free(tj->memo);
}

void
render_free(struct render *r)
{
	size_t i;
	int k;

	if (r == NULL)
		return;
	for (i = 0; i < r->nsets; i++) {
		struct tset *set = &r->sets[i];

		for (k = 0; k <= NPARTS; k++) {
			if (k < NPARTS)
				tjob_free(&set->tj[k]);
			if (set->own & (1 << k))
				template_free(*render_set_tpl(set, k));
		}
		rbuf_free(&set->subject_hdr);
	}
	free(r->sets);
	unsub_key_free(r->key);
	rbuf_free(&r->from_hdr);
	rbuf_free(&r->unsub_base);
	rbuf_free(&r->arena);
	rbuf_free(&r->subj_raw);
	rbuf_free(&r->subj_clean);
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

	struct tpost *tp;

	(void)part;
	rbuf_reset(&tj->enc);
	rbuf_reset(&tj->raw);
	tj->nchunks = tj->npieces = 0;
	if (r->nposts > tj->captp) {
		tj->captp = r->nposts;
		tj->tp = wrealloc(tj->tp, tj->captp * sizeof(*tj->tp));
	}
	aligned = tjob_build(r, tj, 0, t->posts);
	tj->npre = tj->nchunks;
	for (j = 0; j < r->nposts; j++) {
		p = &r->posts[j];
		tp = &tj->tp[j];
		r->cur = p;
		tp->raw_off = tj->raw.len;
		template_expand(t, t->posts + 1, pend, render_lookup, r,
		    &tj->raw);
		tp->raw_len = tj->raw.len - tp->raw_off;
		if (tp->raw_len > 0 && tj->raw.p[tj->raw.len - 1] != '\n')
			aligned = 0;
		tp->enc_off = tj->enc.len;
		mime_qp_encode(&tj->enc, tj->raw.p + tp->raw_off, tp->raw_len);
		tp->enc_len = tj->enc.len - tp->enc_off;
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
	size_t i, col;

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
	/* RFC 3834: no vacation or out-of-office reply should answer it. */
	rbuf_adds(&r->tail_hdr, "Auto-Submitted: auto-generated\r\n");
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

	/* Each set is prepared when its first reader comes. */
	r->gen++;
	r->have_job = 1;
	render_set_prepare(r, &r->sets[0]);
	return 0;
}

/* Render a set's Subject line into out. */
static void
render_subject(struct render *r, const struct tset *set, struct rbuf *out)
{
	rbuf_reset(&r->subj_raw);
	rbuf_reset(&r->subj_clean);
	template_expand(set->subj, 0, set->subj->nnodes, render_lookup, r,
	    &r->subj_raw);
	mime_clean(&r->subj_clean, r->subj_raw.p, RENDER_SUBJECT_MAX,
	    MIME_CLEAN_ONELINE | MIME_CLEAN_ELLIPSIS);
	rbuf_add(out, "Subject: ", 9);
	mime_header_text(out, 9, r->subj_clean.p, r->subj_clean.len);
	rbuf_add(out, "\r\n", 2);
}

/* Pre-render a set for the job in hand, once per job. */
static void
render_set_prepare(struct render *r, struct tset *set)
{
	size_t i;
	int k;

	if (set->gen == r->gen)
		return;
	set->fixed_len = 0;
	for (k = 0; k < NPARTS; k++) {
		tjob_prepare(r, &set->tj[k], k);
		set->fixed_len += set->tj[k].enc.len;
		for (i = 0; i < r->nposts; i++)
			set->fixed_len -= set->tj[k].tp[i].enc_len;
	}
	set->subj_dyn = 0;
	for (i = 0; i < set->subj->nnodes; i++)
		if (set->subj->nodes[i].dyn)
			set->subj_dyn = 1;
	rbuf_reset(&set->subject_hdr);
	if (!set->subj_dyn)
		render_subject(r, set, &set->subject_hdr);
	set->gen = r->gen;
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

/* Encode dyn chunk i's text raw into out, or copy it if it is the last's. */
static void
render_chunk_encode(struct tjob *tj, size_t i, const struct rbuf *raw,
    struct rbuf *out)
{
	struct rchunk *c = &tj->chunks[i];
	struct rmemo *m;
	size_t start = out->len, k;

	if (i >= tj->capmemo) {
		k = tj->capmemo;
		tj->capmemo = tj->capchunks;
		tj->memo = wrealloc(tj->memo, tj->capmemo * sizeof(*tj->memo));
		memset(tj->memo + k, 0, (tj->capmemo - k) * sizeof(*tj->memo));
	}
	m = &tj->memo[i];
	if (c->memo && m->raw.len == raw->len && (raw->len == 0 ||
	    memcmp(m->raw.p, raw->p, raw->len) == 0)) {
		if (m->enc.len > 0)
			rbuf_add(out, m->enc.p, m->enc.len);
		return;
	}
	mime_qp_encode(out, raw->p, raw->len);
	rbuf_reset(&m->raw);
	rbuf_reset(&m->enc);
	if (raw->len > 0)
		rbuf_add(&m->raw, raw->p, raw->len);
	if (out->len > start)
		rbuf_add(&m->enc, out->p + start, out->len - start);
	c->memo = 1;
}

static void
render_part(struct render *r, struct tjob *tj, size_t nsel, struct rbuf *out)
{
	const struct template *t = tj->t;
	const struct rchunk *c;
	const struct rpiece *pc;
	size_t i, j;

	if (!tj->aligned) {
		/* Slow path: the whole part, rendered and encoded here. */
		rbuf_reset(&r->scratch);
		template_expand(t, 0, t->posts, render_lookup, r, &r->scratch);
		for (i = 0; i < nsel; i++) {
			const struct tpost *p = &tj->tp[r->sel[i]];

			rbuf_add(&r->scratch, tj->raw.p + p->raw_off,
			    p->raw_len);
		}
		template_expand(t, t->nodes[t->posts].end, t->nnodes,
		    render_lookup, r, &r->scratch);
		mime_qp_encode(out, r->scratch.p, r->scratch.len);
		return;
	}
	for (i = 0; i < tj->nchunks; i++) {
		if (i == tj->npre)
			for (j = 0; j < nsel; j++) {
				const struct tpost *p = &tj->tp[r->sel[j]];

				rbuf_add(out, tj->enc.p + p->enc_off,
				    p->enc_len);
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
		render_chunk_encode(tj, i, &r->scratch, out);
	}
	if (tj->npre == tj->nchunks)
		for (j = 0; j < nsel; j++) {
			const struct tpost *p = &tj->tp[r->sel[j]];

			rbuf_add(out, tj->enc.p + p->enc_off, p->enc_len);
		}
}

int
render_message(struct render *r, const struct recipient *rc, struct rbuf *out,
    char *message_id, size_t midlen)
{
	char token[UNSUB_TOKEN_LEN + 1], uid[24];
	size_t i, nsel = 0, ulen, ulen2;
	const char *addr, *why;
	struct tset *set;

	if (r == NULL || !r->have_job || rc == NULL)
		return -1;
	r->rcpt = NULL;
	if (address_prepare(rc->email, r->addr, sizeof(r->addr), &addr,
	    &why) != ADDRESS_OK) {
		log_warnx("uid=%lld: address not usable (%s): skipped as "
		    "no_email", (long long)rc->uid, why);
		return -1;
	}
	for (i = 0; i < r->nposts && nsel < (size_t)r->max_posts; i++)
		if (r->posts[i].author_id != rc->uid)
			r->sel[nsel++] = i;
	if (nsel == 0)
		return 0;
	if (unsub_key_token(r->key, rc->uid, r->gid, token) == -1)
		return -1;
	set = render_set_for(r, rc->locale);
	render_set_prepare(r, set);

	r->rc = rc;
	r->rcpt = addr;
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
	ulen2 = 4096 + set->fixed_len;
	for (i = 0; i < nsel; i++)
		ulen2 += set->tj[PART_TEXT].tp[r->sel[i]].enc_len +
		    set->tj[PART_HTML].tp[r->sel[i]].enc_len;
	rbuf_reserve(out, ulen2);
	rbuf_add(out, r->from_hdr.p, r->from_hdr.len);
	rbuf_add(out, "To: ", 4);
	if (r->rname.len > 0) {
		i = mime_header_phrase(out, 4, r->rname.p, r->rname.len);
		if (i + strlen(addr) + 3 > 78)
			rbuf_add(out, "\r\n <", 4);
		else
			rbuf_add(out, " <", 2);
	} else
		rbuf_addc(out, '<');
	rbuf_adds(out, addr);
	rbuf_add(out, ">\r\n", 3);
	if (set->subj_dyn)
		render_subject(r, set, out);
	else
		rbuf_add(out, set->subject_hdr.p, set->subject_hdr.len);
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
	render_part(r, &set->tj[PART_TEXT], nsel, out);
	rbuf_add(out, r->part2.p, r->part2.len);
	render_part(r, &set->tj[PART_HTML], nsel, out);
	rbuf_add(out, r->close.p, r->close.len);
	r->rc = NULL;
	return (int)nsel;
}

const char *
render_rcpt(const struct render *r)
{
	return r->rcpt;
}
