/*
 * libFuzzer target for the renderer: builds a group, its posts, a
 * recipient and the job from the input, renders, and checks the MIME
 * invariants a mail reader and an SMTP server rely on:
 *
 *   - CRLF line ends only, no line of 998 octets or more;
 *   - only the headers we write, each once: nothing from the data starts
 *     a header line of its own;
 *   - exactly a text/plain then a text/html part, quoted-printable, that
 *     decode to valid UTF-8, with the boundary nowhere inside them;
 *   - no "<script" in the decoded HTML, and every href is http or https;
 *   - the number of posts listed is what the selection rules say.
 *
 * It also feeds a string of the input to the template parser, which must
 * refuse or accept it without harm.
 *
 * Input layout: 4 bytes of knobs, then length-prefixed strings (one
 * length byte, then that many bytes) for the job id, the group name and
 * url, the recipient's email and name, then per post its title, url,
 * author and excerpt and 3 bytes for author, likes and comments.
 *
 * Built by the fuzz rule of GNUmakefile (clang -fsanitize=fuzzer); with
 * -DFUZZ_MAIN it is a plain program that runs the files named on its
 * command line, to replay a crash without libFuzzer.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "mime.h"
#include "mime_decode.h"
#include "render.h"
#include "template.h"

#define FUZZ_MAX_POSTS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct reader {
	const uint8_t *p;
	size_t left;
};

static uint8_t
rd_byte(struct reader *r)
{
	if (r->left == 0)
		return 0;
	r->left--;
	return *r->p++;
}

/* A NUL-terminated string from the input; NULL for length 255. */
static char *
rd_str(struct reader *r, char *store, size_t cap)
{
	size_t n = rd_byte(r);

	if (n == 255)
		return NULL;
	if (n > r->left)
		n = r->left;
	if (n >= cap)
		n = cap - 1;
	memcpy(store, r->p, n);
	store[n] = '\0';
	r->p += n;
	r->left -= n;
	return store;
}

static void
check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_render: invariant broken: %s\n", what);
		abort();
	}
}

static const char *known_headers[] = { "From:", "To:", "Subject:", "Date:",
	"Message-ID:", "List-Id:", "List-Unsubscribe:",
	"List-Unsubscribe-Post:", "Auto-Submitted:", "X-Digest-Job:",
	"MIME-Version:", "Content-Type:", NULL };

/*
 * Every href attribute of a tag is http or https.  An attribute's name
 * follows white space outside any quoted value; a value (a url, say) may
 * itself hold "href=", which is no attribute.
 */
static void
check_tag_hrefs(const char *tag)
{
	const char *a, *v;
	char quote = '\0';

	for (a = tag; *a != '\0'; a++) {
		if (quote != '\0') {
			if (*a == quote)
				quote = '\0';
			continue;
		}
		if (*a == '"' || *a == '\'') {
			quote = *a;
			continue;
		}
		if (!isspace((unsigned char)*a) ||
		    strncasecmp(a + 1, "href=", 5) != 0)
			continue;
		v = a + 6;
		if (*v == '"' || *v == '\'')
			v++;
		check(strncasecmp(v, "http://", 7) == 0 ||
		    strncasecmp(v, "https://", 8) == 0, "href not http(s)");
	}
}

static void
check_html(const char *h)
{
	const char *p;

	const char *e;
	static char tag[32768];

	check(strcasestr(h, "<script") == NULL, "<script in the HTML part");
	/*
	 * Attributes live inside tags, and escaped text holds no '<': look
	 * at every tag (the text between tags may say "href=" harmlessly).
	 */
	for (p = h; (p = strchr(p, '<')) != NULL; p = e) {
		e = strchr(p, '>');
		check(e != NULL, "unclosed tag");
		check((size_t)(e - p) < sizeof(tag), "tag too long");
		memcpy(tag, p, (size_t)(e - p));
		tag[e - p] = '\0';
		check_tag_hrefs(tag);
	}
}

static void
check_message(const char *s, size_t len, const char *mid)
{
	const char *p, *end = s + len, *hend, *eol, *b, *q;
	char boundary[128], delim[140], want[300];
	int seen[16] = { 0 }, i, nparts = 0;
	size_t dlen, col = 0, k;

	/* CRLF only, short lines. */
	check(len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n',
	    "ends with CRLF");
	for (k = 0; k < len; k++) {
		check(s[k] != '\0', "NUL in message");
		if (s[k] == '\r') {
			check(k + 1 < len && s[k + 1] == '\n', "bare CR");
			k++;
			col = 0;
			continue;
		}
		check(s[k] != '\n', "bare LF");
		check(++col < 998, "line of 998 octets");
	}

	/* Headers: ours only, each once. */
	hend = strstr(s, "\r\n\r\n");
	check(hend != NULL, "header block ends");
	for (p = s; p < hend + 2; p = eol + 2) {
		eol = strstr(p, "\r\n");
		if (*p == ' ' || *p == '\t')
			continue;
		for (i = 0; known_headers[i] != NULL; i++)
			if (strncmp(p, known_headers[i],
			    strlen(known_headers[i])) == 0)
				break;
		check(known_headers[i] != NULL, "unknown header line");
		check(!seen[i], "header twice");
		seen[i] = 1;
		if (strcmp(known_headers[i], "Message-ID:") == 0) {
			snprintf(want, sizeof(want), "Message-ID: <%s>\r\n", mid);
			check(strncmp(p, want, strlen(want)) == 0,
			    "Message-ID matches");
		}
	}
	for (i = 0; known_headers[i] != NULL; i++)
		check(seen[i], "header missing");

	/* The boundary of our Content-Type, not text in another header. */
	q = strstr(s, "\r\nContent-Type: multipart/alternative;\r\n boundary=\"");
	check(q != NULL && q < hend, "boundary");
	q += 51;
	b = strchr(q, '"');
	check(b != NULL && (size_t)(b - q) < 100, "boundary ends");
	snprintf(boundary, sizeof(boundary), "%.*s", (int)(b - q), q);
	dlen = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);

	p = memmem(hend, (size_t)(end - hend), delim, dlen);
	check(p != NULL, "first part");
	for (;;) {
		struct rbuf dec = { 0 };
		const char *ph, *next;

		p += dlen;
		if (p[0] == '-' && p[1] == '-') {
			check(p + 4 == end, "closing delimiter ends the message");
			break;
		}
		p += 2;
		ph = strstr(p, "\r\n\r\n");
		check(ph != NULL, "part headers end");
		if (nparts == 0)
			check(strncmp(p, "Content-Type: text/plain; "
			    "charset=UTF-8\r\nContent-Transfer-Encoding: "
			    "quoted-printable\r\n\r\n", (size_t)(ph + 4 - p)) ==
			    0, "text/plain first");
		else
			check(strncmp(p, "Content-Type: text/html; "
			    "charset=UTF-8\r\nContent-Transfer-Encoding: "
			    "quoted-printable\r\n\r\n", (size_t)(ph + 4 - p)) ==
			    0, "text/html second");
		p = ph + 4;
		next = memmem(p, (size_t)(end - p), delim, dlen);
		check(next != NULL, "part ends");
		check(memmem(p, (size_t)(next - p), boundary,
		    strlen(boundary)) == NULL, "boundary inside a part");
		check(mime_qp_decode(&dec, p, (size_t)(next - p)) == 0,
		    "part decodes");
		if (dec.p != NULL) {
			check(mime_utf8_valid(dec.p, dec.len), "UTF-8 part");
			check(memchr(dec.p, '\0', dec.len) == NULL,
			    "NUL in a part");
			if (nparts == 1)
				check_html(dec.p);
		}
		rbuf_free(&dec);
		nparts++;
		check(nparts <= 2, "two parts only");
		p = next;
	}
	check(nparts == 2, "two parts");
}

static const char *
fuzz_lookup(void *arg, int var, size_t *len)
{
	const char *v = arg;

	(void)var;
	*len = strlen(v);
	return v;
}

static void
fuzz_template(const char *src, size_t len)
{
	struct rbuf out = { 0 };
	struct template *t;
	char err[512];
	int html;

	for (html = 0; html < 2; html++) {
		if ((t = template_parse("fuzz.txt", src, len, html, err,
		    sizeof(err))) == NULL) {
			check(strncmp(err, "fuzz.txt:", 9) == 0,
			    "template error names the file");
			continue;
		}
		template_expand(t, 0, t->nnodes, fuzz_lookup,
		    (void *)"<script>&\"'", &out);
		if (html && out.p != NULL)
			check(strstr(out.p, "<script>&\"'") == NULL,
			    "template values escaped");
		template_free(t);
		rbuf_reset(&out);
	}
	rbuf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config *cfg;
	static struct render *rnd[13];
	static char strs[6 + 4 * FUZZ_MAX_POSTS][512];
	struct reader r = { data, size };
	struct post posts[FUZZ_MAX_POSTS];
	struct group_info g;
	struct recipient rc;
	struct job job;
	struct rbuf out = { 0 };
	char err[512], mid[256], *jid, abuf[ADDRESS_MAX + 2];
	const char *addr, *why;
	uint8_t k0, k1, k2, k3;
	size_t i, nposts, eligible = 0;
	int max_posts, got, si = 0;

	if (cfg == NULL) {
		cfg = calloc(1, sizeof(*cfg));
		strcpy(cfg->digest.from, "Groups <digest@example.com>");
		strcpy(cfg->digest.from_addr, "digest@example.com");
		strcpy(cfg->digest.from_domain, "example.com");
		strcpy(cfg->digest.unsubscribe_url,
		    "https://example.com/unsubscribe");
		strcpy(cfg->digest.unsubscribe_secret, "fuzz");
	}
	k0 = rd_byte(&r);
	k1 = rd_byte(&r);
	k2 = rd_byte(&r);
	k3 = rd_byte(&r);
	if (k3 & 0x80) {
		/* The template parser on the rest of the input. */
		fuzz_template((const char *)r.p, r.left);
		return 0;
	}
	max_posts = 1 + k1 % 12;
	if (rnd[max_posts] == NULL) {
		cfg->digest.max_posts = max_posts;
		rnd[max_posts] = render_new(cfg, err, sizeof(err));
		check(rnd[max_posts] != NULL, "render_new");
	}
	nposts = k0 % (FUZZ_MAX_POSTS + 1);

	memset(&job, 0, sizeof(job));
	jid = rd_str(&r, strs[si++], sizeof(job.job_id));
	strcpy(job.job_id, jid != NULL ? jid : "daily.1.2.0");
	strcpy(job.period, k3 & 1 ? "weekly" : "daily");
	job.group_id = k2;
	g.id = k2;
	g.name = rd_str(&r, strs[si++], 512);
	g.url = rd_str(&r, strs[si++], 512);
	g.members = 10;
	rc.uid = k2 % 4;
	rc.email = rd_str(&r, strs[si++], 512);
	if (k3 & 2)
		rc.email = "member@example.com";
	rc.name = rd_str(&r, strs[si++], 512);
	rc.locale = k3 & 4 ? "de" : NULL;
	for (i = 0; i < nposts; i++) {
		memset(&posts[i], 0, sizeof(posts[i]));
		posts[i].id = (int64_t)i;
		posts[i].title = rd_str(&r, strs[si++], 512);
		posts[i].url = rd_str(&r, strs[si++], 512);
		posts[i].author_name = rd_str(&r, strs[si++], 512);
		posts[i].excerpt = rd_str(&r, strs[si++], 512);
		posts[i].author_id = rd_byte(&r) % 4;
		posts[i].likes = (int8_t)rd_byte(&r);
		posts[i].comments = rd_byte(&r);
		posts[i].posted_at = 1764300000 + (int64_t)(i * 7 % 5);
		if (posts[i].author_id != rc.uid)
			eligible++;
	}
	check(render_job(rnd[max_posts], &job, &g, posts, nposts) == 0,
	    "render_job");
	got = render_message(rnd[max_posts], &rc, &out, mid, sizeof(mid));
	if (address_prepare(rc.email, abuf, sizeof(abuf), &addr, &why) !=
	    ADDRESS_OK)
		check(got == -1, "a bad email is refused");
	else {
		check(got == (int)(eligible < (size_t)max_posts ? eligible :
		    (size_t)max_posts), "posts listed");
		if (got == 0)
			check(out.len == 0, "nothing appended");
		else
			check_message(out.p, out.len, mid);
	}
	rbuf_free(&out);
	return 0;
}

#ifdef FUZZ_MAIN
int
main(int argc, char *argv[])
{
	static uint8_t buf[1 << 20];
	FILE *fp;
	size_t n;
	int i;

	for (i = 1; i < argc; i++) {
		if ((fp = fopen(argv[i], "rb")) == NULL) {
			perror(argv[i]);
			return 1;
		}
		n = fread(buf, 1, sizeof(buf), fp);
		fclose(fp);
		LLVMFuzzerTestOneInput(buf, n);
	}
	return 0;
}
#endif
