/* SPDX-License-Identifier: MIT */
/*
 * Folded stacks and SVG flame graphs of CPU samples, allocated bytes, bytes
 * in use at the heap peak (peak.c), temporary allocations, or I/O time
 * (kprof-analyze flame --what ...).
 *
 * Folded: one line per distinct stack, root first, frames joined by ';',
 * then a space and the weight (CPU ns, bytes, I/O ns):
 *     main;run;hot_a 12000000
 * Frame names never contain ';', newline or control characters (replaced
 * by ':' and '?'), so the format round-trips.
 *
 * The SVG is self-contained (inline script and style, no external fetch):
 * hover shows a frame's name, weight and share; click zooms into a frame
 * (click the bottom bar or press Escape to reset); "Search" highlights the
 * frames matching a regular expression and shows their share. Every
 * program string is XML-escaped, invalid UTF-8 is replaced, long names
 * are cut to the frame's width by the script (the full name is in the
 * title), and frames narrower than 0.1 px are left out.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "cpu.h"

struct fline {
	char *s;
	uint64_t v;
};

static int by_str(const void *a, const void *b)
{
	return strcmp(((const struct fline *)a)->s,
		      ((const struct fline *)b)->s);
}

static enum kp_what what_of(const struct kp_analysis *an)
{
	const char *w = an->opts->what ? an->opts->what : "cpu";
	return !strcmp(w, "alloc") ? KP_WHAT_ALLOC :
	       !strcmp(w, "live") ? KP_WHAT_LIVE :
	       !strcmp(w, "io") ? KP_WHAT_IO :
	       !strcmp(w, "temporary") ? KP_WHAT_TEMP :
	       !strcmp(w, "lost") ? KP_WHAT_LOST : KP_WHAT_CPU;
}

/* Append a sanitized frame name to a growing string. */
static void put_name(char **s, size_t *n, size_t *cap, const char *name)
{
	size_t len = strlen(name);
	if (*n + len + 2 > *cap) {
		*cap = (*n + len + 2) * 2;
		*s = xrealloc(*s, *cap);
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		(*s)[(*n)++] = c == ';' ? ':' : c < 0x20 || c == 0x7f ? '?'
								      : (char)c;
	}
	(*s)[*n] = '\0';
}

/* The merged, sorted folded lines of the selected "what". */
static size_t folded_lines(struct kp_analysis *an, enum kp_what w,
			   struct fline **out)
{
	struct kp_wstack *ws;
	size_t n = kp_what_stacks(an, w, &ws), nl = 0;
	struct fline *l = xrealloc_array(NULL, n ? n : 1, sizeof(*l));
	char buf[256];
	for (size_t i = 0; i < n; i++) {
		const struct kp_gstack *g = &an->gstacks[ws[i].gstack];
		char *s = NULL;
		size_t len = 0, cap = 0;
		put_name(&s, &len, &cap, "");
		if (!g->depth)
			put_name(&s, &len, &cap, "(no stack)");
		for (uint32_t d = g->depth; d-- > ws[i].skip;) {
			put_name(&s, &len, &cap, kp_frame_name(an,
				kp_gframe(an, g, d), d == 0, buf,
				sizeof(buf)));
			if (d > ws[i].skip)
				put_name(&s, &len, &cap, ";");
			/* put_name turned it into ':'; make it ';' again */
			if (d > ws[i].skip)
				s[len - 1] = ';';
		}
		l[nl].s = s;
		l[nl++].v = ws[i].value;
	}
	free(ws);
	qsort(l, nl, sizeof(*l), by_str);
	size_t m = 0;
	for (size_t i = 0; i < nl; i++) {
		if (m && !strcmp(l[m - 1].s, l[i].s)) {
			l[m - 1].v = kp_sat_add(l[m - 1].v, l[i].v);
			free(l[i].s);
		} else {
			l[m++] = l[i];
		}
	}
	*out = l;
	return m;
}

/* ---- the tree ---------------------------------------------------------- */

struct node {
	char *name;       /* points into a folded line (not owned) */
	size_t name_len;
	uint64_t v;
	struct node *kids;
	size_t nkids, kcap;
};

static struct node *child(struct node *p, const char *name, size_t len)
{
	for (size_t i = p->nkids; i-- > 0;)
		if (p->kids[i].name_len == len &&
		    !memcmp(p->kids[i].name, name, len))
			return &p->kids[i];
	if (p->nkids == p->kcap) {
		p->kcap = p->kcap ? 2 * p->kcap : 4;
		p->kids = xrealloc_array(p->kids, p->kcap, sizeof(*p->kids));
	}
	struct node *c = &p->kids[p->nkids++];
	memset(c, 0, sizeof(*c));
	c->name = (char *)name;
	c->name_len = len;
	return c;
}

static void tree_free(struct node *n)
{
	for (size_t i = 0; i < n->nkids; i++)
		tree_free(&n->kids[i]);
	free(n->kids);
}

static unsigned tree_depth(const struct node *n)
{
	unsigned d = 0;
	for (size_t i = 0; i < n->nkids; i++) {
		unsigned k = tree_depth(&n->kids[i]);
		if (k > d)
			d = k;
	}
	return d + 1;
}

/* XML text: escape markup, replace control chars and invalid UTF-8. */
static void xml_text(FILE *out, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		if (c < 0x80) {
			if (c == '&')
				fputs("&amp;", out);
			else if (c == '<')
				fputs("&lt;", out);
			else if (c == '>')
				fputs("&gt;", out);
			else if (c == '"')
				fputs("&quot;", out);
			else if (c == '\'')
				fputs("&#39;", out);
			else if (c < 0x20 || c == 0x7f)
				fputc('?', out);
			else
				fputc((int)c, out);
			i++;
			continue;
		}
		size_t len = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 :
			     c >= 0xc2 && c < 0xe0 ? 2 : 0;
		int ok = len && i + len <= n;
		for (size_t k = 1; ok && k < len; k++)
			ok = (p[i + k] & 0xc0) == 0x80;
		if (ok && len == 3 && c == 0xe0 && p[i + 1] < 0xa0)
			ok = 0;
		if (ok && len == 3 && c == 0xed && p[i + 1] >= 0xa0)
			ok = 0; /* surrogates */
		if (ok && len == 4 && c == 0xf0 && p[i + 1] < 0x90)
			ok = 0;
		if (ok && len == 4 && c == 0xf4 && p[i + 1] >= 0x90)
			ok = 0;
		if (ok && len == 3 && c == 0xef && p[i + 1] == 0xbf &&
		    p[i + 2] >= 0xbe)
			ok = 0; /* U+FFFE, U+FFFF are not XML characters */
		if (!ok) {
			fputc('?', out);
			i++;
			continue;
		}
		fwrite(p + i, 1, len, out);
		i += len;
	}
}

#define SVG_W 1200.0
#define ROW 16
#define TOP 56
#define MIN_W 0.1

struct svg {
	FILE *out;
	uint64_t total;
	unsigned depth;
	const char *unit;
	double scale; /* value -> px */
};

static void svg_frame(struct svg *g, const struct node *n, double x,
		      unsigned level)
{
	double w = (double)n->v * g->scale;
	if (w < MIN_W)
		return;
	double y = TOP + (double)(g->depth - 1 - level) * ROW;
	uint64_t h = kp_hash_bytes(n->name, n->name_len, 7);
	unsigned r = 205 + (unsigned)(h % 50), gr = (unsigned)((h >> 8) % 180),
		 b = (unsigned)((h >> 16) % 55);
	fputs("<g class=\"f\"><title>", g->out);
	xml_text(g->out, n->name, n->name_len);
	fprintf(g->out, " (%" PRIu64 " %s, %.2f%%)</title>", n->v, g->unit,
		g->total ? 100.0 * (double)n->v / (double)g->total : 0.0);
	fprintf(g->out, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" "
		"height=\"%d\" fill=\"rgb(%u,%u,%u)\" rx=\"2\"/>"
		"<text x=\"%.2f\" y=\"%.1f\">", x, y, w, ROW - 1, r, gr, b,
		x + 3, y + ROW - 4.5);
	xml_text(g->out, n->name, n->name_len);
	fputs("</text></g>\n", g->out);
	for (size_t i = 0; i < n->nkids; i++) {
		svg_frame(g, &n->kids[i], x, level + 1);
		x += (double)n->kids[i].v * g->scale;
	}
}

static const char svg_script[] =
"<script type=\"text/ecmascript\"><![CDATA[\n"
"var F=[],det,mt;\n"
"function init(){var gs=document.getElementsByClassName('f');det=document.getElementById('det');mt=document.getElementById('mt');\n"
" for(var i=0;i<gs.length;i++){var g=gs[i],r=g.getElementsByTagName('rect')[0],t=g.getElementsByTagName('text')[0];\n"
"  var f={g:g,r:r,t:t,x:+r.getAttribute('x'),w:+r.getAttribute('width'),y:+r.getAttribute('y'),name:t.textContent,title:g.getElementsByTagName('title')[0].textContent};\n"
"  F.push(f);(function(f){g.onmouseover=function(){det.textContent=f.title;};g.onmouseout=function(){det.textContent=' ';};g.onclick=function(){zoom(f);};})(f);}\n"
" zoom(null);document.onkeydown=function(e){if(e.key==='Escape')zoom(null);};}\n"
"function fit(f,x,w){f.r.setAttribute('x',x);f.r.setAttribute('width',w);f.t.setAttribute('x',x+3);\n"
" var n=Math.floor((w-6)/7);f.t.textContent=n<3?'':(f.name.length<=n?f.name:f.name.substring(0,n-2)+'..');}\n"
"function zoom(z){var x0=z?z.x:0,w0=z?z.w:" "1200" ",s=1200/w0;\n"
" for(var i=0;i<F.length;i++){var f=F[i];\n"
"  if(z&&f.y>z.y){var inside=f.x<z.x+z.w-1e-6&&f.x+f.w>z.x+1e-6;f.g.style.display=inside?'':'none';if(inside)fit(f,0,1200);f.g.style.opacity=inside?0.6:1;continue;}\n"
"  var inr=!z||(f.x>=x0-1e-6&&f.x+f.w<=x0+w0+1e-6);f.g.style.display=inr?'':'none';f.g.style.opacity=1;if(inr)fit(f,(f.x-x0)*s,f.w*s);}}\n"
"function search(){var re=prompt('Search (regular expression)','');if(re===null)return;var m=0,tot=0,rx;\n"
" try{rx=new RegExp(re);}catch(e){mt.textContent='bad expression';return;}\n"
" var hit=[];for(var i=0;i<F.length;i++){var f=F[i],on=re!==''&&rx.test(f.name);f.r.style.fill=on?'rgb(230,0,230)':'';if(on)hit.push(f);if(f.w>tot)tot=f.w;}\n"
" hit.sort(function(a,b){return a.x-b.x||b.w-a.w;});var end=-1;for(var i=0;i<hit.length;i++){var f=hit[i];if(f.x>=end-1e-6){m+=f.w;end=f.x+f.w;}}\n"
" mt.textContent=re===''?'':'matched '+(tot?(100*m/tot).toFixed(1):'0')+'%';}\n"
"]]></script>\n";

/* @return the SVG's height in px. */
static unsigned write_svg(enum kp_what w, FILE *out, const struct fline *l,
			  size_t nl)
{
	struct node root;
	memset(&root, 0, sizeof(root));
	root.name = (char *)"all";
	root.name_len = 3;
	for (size_t i = 0; i < nl; i++) {
		struct node *n = &root;
		root.v = kp_sat_add(root.v, l[i].v);
		const char *s = l[i].s;
		while (*s) {
			const char *e = strchr(s, ';');
			size_t len = e ? (size_t)(e - s) : strlen(s);
			n = child(n, s, len);
			n->v = kp_sat_add(n->v, l[i].v);
			s += len + (e ? 1 : 0);
		}
	}
	const char *what = w == KP_WHAT_CPU ? "CPU time" :
			   w == KP_WHAT_ALLOC ? "allocated bytes" :
			   w == KP_WHAT_LIVE ? "bytes in use at the heap peak" :
			   w == KP_WHAT_TEMP ? "temporary allocations" :
			   w == KP_WHAT_LOST ? "bytes lost at exit (leak scan)" :
					       "I/O time";
	struct svg g = { out, root.v, tree_depth(&root),
			 w == KP_WHAT_CPU || w == KP_WHAT_IO ? "ns" :
			 w == KP_WHAT_TEMP ? "allocations" : "bytes",
			 root.v ? SVG_W / (double)root.v : 0 };
	double height = TOP + (double)g.depth * ROW + 30;
	fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\" "
		"standalone=\"no\"?>\n"
		"<svg version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
		"viewBox=\"0 0 %.0f %.0f\" onload=\"init()\" "
		"xmlns=\"http://www.w3.org/2000/svg\">\n", SVG_W, height,
		SVG_W, height);
	fputs("<style>text{font:12px monospace;fill:#000;pointer-events:"
	      "none}.f rect{stroke:#fff;stroke-width:0.5;cursor:pointer}"
	      ".f:hover rect{stroke:#000}#title{font:16px sans-serif}"
	      "#sb{cursor:pointer;fill:#06c}</style>\n", out);
	fputs(svg_script, out);
	fprintf(out, "<rect width=\"100%%\" height=\"100%%\" fill=\"#f8f8f0\"/>"
		"<text id=\"title\" x=\"600\" y=\"22\" text-anchor=\"middle\">"
		"Flame graph: %s (%" PRIu64 " %s)</text>\n"
		"<text id=\"sb\" x=\"1190\" y=\"22\" text-anchor=\"end\" "
		"onclick=\"search()\" style=\"pointer-events:all\">Search"
		"</text>\n<text id=\"mt\" x=\"1190\" y=\"40\" "
		"text-anchor=\"end\"> </text>\n<text id=\"det\" x=\"10\" "
		"y=\"%.0f\"> </text>\n", what, root.v, g.unit, height - 10);
	if (root.v)
		svg_frame(&g, &root, 0, 0);
	fputs("</svg>\n", out);
	tree_free(&root);
	return (unsigned)height;
}

static void free_lines(struct fline *l, size_t nl)
{
	for (size_t i = 0; i < nl; i++)
		free(l[i].s);
	free(l);
}

unsigned kp_flame_svg(struct kp_analysis *an, enum kp_what w, FILE *out)
{
	struct fline *l;
	size_t nl = folded_lines(an, w, &l);
	unsigned h = nl ? write_svg(w, out, l, nl) : 0;
	free_lines(l, nl);
	return h;
}

int kp_flame_command(struct kp_analysis *an, FILE *out)
{
	struct fline *l;
	size_t nl = folded_lines(an, what_of(an), &l);
	if (!nl)
		warning("no %s data in the trace%s",
			an->opts->what ? an->opts->what : "cpu",
			what_of(an) == KP_WHAT_CPU ?
				" (record with KOTOBA_PROFILE_CPU=1)" : "");
	if (an->opts->folded) {
		for (size_t i = 0; i < nl; i++)
			fprintf(out, "%s %" PRIu64 "\n", l[i].s, l[i].v);
	} else {
		write_svg(what_of(an), out, l, nl);
	}
	free_lines(l, nl);
	return 0;
}
