/*
 * trigger — see trigger.h. Patterns are compiled into a list of tokens (a
 * character, a set, `*` or `**`, each maybe quantified by `?` or `+`) and
 * matched with one pass of dynamic programming over the subject per token,
 * so no pattern can make matching take more than len(pattern) x len(subject)
 * steps, whatever its stars.
 */
#include "common/trigger.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_INPUT_VALUE (64u << 10)

enum { T_CHAR, T_SET, T_STAR, T_DSTAR, T_DSTAR_SLASH /* `**` + `/`: nothing, or up to a `/` */ };
enum { Q_ONE, Q_OPT, Q_PLUS };

typedef struct token {
	uint8_t kind, quant;
	unsigned char ch;
	uint8_t set[32]; /* T_SET: bit c */
} token;

static bool tok_accepts(const token *t, unsigned char c)
{
	if (t->kind == T_CHAR)
		return t->ch == c;
	return (t->set[c >> 3] >> (c & 7)) & 1;
}

/* Compiles pattern into toks (room for strlen(pattern) tokens); returns the count. */
static size_t compile(const char *p, token *toks)
{
	size_t n = 0;
	for (size_t i = 0; p[i];) {
		token *t = &toks[n];
		memset(t, 0, sizeof *t);
		if (p[i] == '*') {
			bool two = p[i + 1] == '*';
			t->kind = two ? T_DSTAR : T_STAR;
			i += two ? 2 : 1;
			while (p[i] == '*') /* *** is ** */
				i++;
			if (two && p[i] == '/') { /* "**\/x" also matches "x" (GitHub's cheat sheet) */
				t->kind = T_DSTAR_SLASH;
				i++;
			}
			n++;
			continue;
		}
		if ((p[i] == '?' || p[i] == '+') && n > 0 && toks[n - 1].kind <= T_SET &&
		    toks[n - 1].quant == Q_ONE) {
			toks[n - 1].quant = p[i] == '?' ? Q_OPT : Q_PLUS;
			i++;
			continue;
		}
		if (p[i] == '[') {
			const char *close = strchr(p + i + 1, ']');
			if (close && close > p + i + 1) {
				t->kind = T_SET;
				for (const char *q = p + i + 1; q < close; q++) {
					unsigned char a = (unsigned char)*q, b = a;
					if (q + 2 < close && q[1] == '-') {
						b = (unsigned char)q[2];
						q += 2;
					}
					for (unsigned c = a; c <= b; c++)
						t->set[c >> 3] |= (uint8_t)(1u << (c & 7));
				}
				i = (size_t)(close - p) + 1;
				n++;
				continue;
			}
		}
		if (p[i] == '\\' && p[i + 1])
			i++;
		t->kind = T_CHAR;
		t->ch = (unsigned char)p[i++];
		n++;
	}
	return n;
}

bool kiln_filter_match(const char *pattern, const char *s)
{
	size_t plen = strlen(pattern), n = strlen(s);
	if (plen > KILN_FILTER_MAX || n > KILN_FILTER_MAX)
		return false;
	token *toks = kiln_malloc((plen ? plen : 1) * sizeof *toks);
	size_t nt = compile(pattern, toks);
	bool *cur = kiln_calloc(2 * (n + 1), sizeof *cur), *next = cur + n + 1;
	cur[0] = true;
	for (size_t k = 0; k < nt; k++) {
		const token *t = &toks[k];
		bool any = false; /* cur[0..j-1] has a true */
		for (size_t j = 0; j <= n; j++) {
			unsigned char prev = j ? (unsigned char)s[j - 1] : 0;
			bool v = false;
			switch (t->kind) {
			case T_STAR:
				v = cur[j] || (j && next[j - 1] && prev != '/');
				break;
			case T_DSTAR:
				v = cur[j] || (j && next[j - 1]);
				break;
			case T_DSTAR_SLASH:
				v = cur[j] || (j && prev == '/' && any);
				break;
			default:
				if (t->quant == Q_ONE)
					v = j && cur[j - 1] && tok_accepts(t, prev);
				else if (t->quant == Q_OPT)
					v = cur[j] || (j && cur[j - 1] && tok_accepts(t, prev));
				else
					v = j && tok_accepts(t, prev) && (cur[j - 1] || next[j - 1]);
			}
			next[j] = v;
			any |= cur[j];
		}
		bool *tmp = cur;
		cur = next;
		next = tmp;
	}
	bool ok = cur[n];
	free(cur < next ? cur : next);
	free(toks);
	return ok;
}

bool kiln_filter_list(const kiln_strv *patterns, const char *s)
{
	bool in = false;
	for (size_t i = 0; i < patterns->n; i++) {
		const char *p = patterns->v[i];
		if (p[0] == '!') {
			if (in && kiln_filter_match(p + 1, s))
				in = false;
		} else if (!in && kiln_filter_match(p, s)) {
			in = true;
		}
	}
	return in;
}

static const char *short_ref(const char *ref)
{
	if (strncmp(ref, "refs/heads/", 11) == 0)
		return ref + 11;
	if (strncmp(ref, "refs/tags/", 10) == 0)
		return ref + 10;
	return ref;
}

/* The include list, or the ignore list, of one kind of filter (GitHub allows one of them). */
static bool names_pass(const kiln_event *ev, unsigned inc_bit, const kiln_strv *inc,
		       unsigned ign_bit, const kiln_strv *ign, const char *name)
{
	if (ev->filters & inc_bit)
		return kiln_filter_list(inc, name);
	if (ev->filters & ign_bit)
		return !kiln_filter_list(ign, name);
	return true;
}

static bool paths_pass(const kiln_event *ev, const kiln_strv *changed)
{
	if (!(ev->filters & (KILN_FILTER_PATHS | KILN_FILTER_PATHS_IGNORE)) || !changed)
		return true;
	for (size_t i = 0; i < changed->n; i++) {
		const char *f = changed->v[i];
		if (ev->filters & KILN_FILTER_PATHS) {
			if (kiln_filter_list(&ev->paths, f) &&
			    (!(ev->filters & KILN_FILTER_PATHS_IGNORE) ||
			     !kiln_filter_list(&ev->paths_ignore, f)))
				return true;
		} else if (!kiln_filter_list(&ev->paths_ignore, f)) {
			return true;
		}
	}
	return false;
}

static bool types_pass(const kiln_event *ev, const kiln_trigger *t)
{
	if (!t->action)
		return true;
	if (ev && (ev->filters & KILN_FILTER_TYPES))
		return kiln_strv_contains(&ev->types, t->action);
	/* GitHub's defaults when `types` is not given */
	if (strcmp(t->event, "pull_request") == 0 || strcmp(t->event, "pull_request_target") == 0)
		return strcmp(t->action, "opened") == 0 || strcmp(t->action, "synchronize") == 0 ||
		       strcmp(t->action, "reopened") == 0;
	if (strcmp(t->event, "workflow_run") == 0)
		return strcmp(t->action, "requested") == 0 || strcmp(t->action, "completed") == 0;
	return true;
}

#define REFUSE(msg)                                                                                \
	do {                                                                                       \
		if (why)                                                                           \
			*why = (msg);                                                              \
		return false;                                                                      \
	} while (0)

bool kiln_trigger_match(const kiln_workflow *wf, const kiln_trigger *t, const char **why)
{
	if (why)
		*why = NULL;
	if (!kiln_workflow_triggers(wf, t->event))
		REFUSE("the workflow does not listen to this event");
	const kiln_event *ev = kiln_workflow_event(wf, t->event);
	if (!types_pass(ev, t))
		REFUSE("activity type not in types");
	if (!ev)
		return true;
	const char *ref = t->ref ? t->ref : "";
	if (strcmp(t->event, "push") == 0) {
		bool tag = strncmp(ref, "refs/tags/", 10) == 0;
		unsigned b = KILN_FILTER_BRANCHES | KILN_FILTER_BRANCHES_IGNORE;
		unsigned tg = KILN_FILTER_TAGS | KILN_FILTER_TAGS_IGNORE;
		if (ev->filters & (b | tg)) {
			/* only branch filters: tags do not run it, and the other way round */
			if (tag && !(ev->filters & tg))
				REFUSE("tag push, and the workflow filters only branches");
			if (!tag && !(ev->filters & b))
				REFUSE("branch push, and the workflow filters only tags");
			bool ok = tag ? names_pass(ev, KILN_FILTER_TAGS, &ev->tags,
						   KILN_FILTER_TAGS_IGNORE, &ev->tags_ignore,
						   short_ref(ref))
				      : names_pass(ev, KILN_FILTER_BRANCHES, &ev->branches,
						   KILN_FILTER_BRANCHES_IGNORE, &ev->branches_ignore,
						   short_ref(ref));
			if (!ok)
				REFUSE(tag ? "tag filtered out" : "branch filtered out");
		}
		if (!tag && !paths_pass(ev, t->paths))
			REFUSE("no changed file passes the paths filters");
		return true;
	}
	if (strcmp(t->event, "pull_request") == 0 || strcmp(t->event, "pull_request_target") == 0) {
		if (!names_pass(ev, KILN_FILTER_BRANCHES, &ev->branches, KILN_FILTER_BRANCHES_IGNORE,
				&ev->branches_ignore, short_ref(ref)))
			REFUSE("base branch filtered out");
		if (!paths_pass(ev, t->paths))
			REFUSE("no changed file passes the paths filters");
		return true;
	}
	if (strcmp(t->event, "workflow_run") == 0) {
		if ((ev->filters & KILN_FILTER_WORKFLOWS) &&
		    !kiln_filter_list(&ev->workflows, t->workflow ? t->workflow : ""))
			REFUSE("triggering workflow not in workflows");
		if (!names_pass(ev, KILN_FILTER_BRANCHES, &ev->branches, KILN_FILTER_BRANCHES_IGNORE,
				&ev->branches_ignore, short_ref(ref)))
			REFUSE("branch filtered out");
		return true;
	}
	return true;
}

bool kiln_trigger_skip_ci(const char *message)
{
	static const char *const marks[] = {"[skip ci]", "[ci skip]", "[no ci]", "[skip actions]",
					    "[actions skip]"};
	for (size_t i = 0; message && i < KILN_ARRAY_SIZE(marks); i++)
		if (strcasestr(message, marks[i]))
			return true;
	return false;
}

static const kiln_input *find_input(const kiln_event *ev, const char *name)
{
	for (size_t i = 0; ev && i < ev->ninputs; i++)
		if (strcmp(ev->inputs[i].name, name) == 0)
			return &ev->inputs[i];
	return NULL;
}

/* The given value as text (NULL when absent); -EINVAL for objects and arrays. */
static int value_text(const char *name, json_t *v, char **out)
{
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_string(v)) {
		if (json_string_length(v) > MAX_INPUT_VALUE)
			return kiln_err(EINVAL, "input '%s': longer than %u bytes", name,
					MAX_INPUT_VALUE);
		*out = kiln_strdup(json_string_value(v));
	} else if (json_is_boolean(v)) {
		*out = kiln_strdup(json_is_true(v) ? "true" : "false");
	} else if (json_is_integer(v)) {
		*out = kiln_asprintf("%lld", (long long)json_integer_value(v));
	} else if (json_is_real(v)) {
		*out = kiln_asprintf("%.17g", json_real_value(v));
	} else {
		return kiln_err(EINVAL, "input '%s': expected a string, a boolean or a number", name);
	}
	return 0;
}

static int typed_value(const kiln_input *in, const char *s, json_t **out)
{
	switch (in->type) {
	case KILN_INPUT_BOOLEAN:
		if (strcasecmp(s, "true") == 0 || strcasecmp(s, "false") == 0) {
			*out = json_boolean(strcasecmp(s, "true") == 0);
			return 0;
		}
		return kiln_err(EINVAL, "input '%s' is a boolean: true or false, not '%.80s'",
				in->name, s);
	case KILN_INPUT_NUMBER: {
		char *end;
		errno = 0;
		double d = strtod(s, &end);
		if (!*s || *end || errno || !isfinite(d))
			return kiln_err(EINVAL, "input '%s' is a number, not '%.80s'", in->name, s);
		*out = d == floor(d) && fabs(d) < 9e15 ? json_integer((json_int_t)d) : json_real(d);
		return 0;
	}
	case KILN_INPUT_CHOICE:
		if (!kiln_strv_contains(&in->options, s)) {
			kiln_buf b = {0};
			for (size_t i = 0; i < in->options.n; i++)
				kiln_buf_printf(&b, "%s%s", i ? ", " : "", in->options.v[i]);
			int r = kiln_err(EINVAL, "input '%s' must be one of: %s (not '%.80s')",
					 in->name, b.p ? b.p : "", s);
			kiln_buf_free(&b);
			return r;
		}
		break;
	case KILN_INPUT_ENVIRONMENT:
		if (strlen(s) > 255 || strpbrk(s, "\n\r\t"))
			return kiln_err(EINVAL, "input '%s': '%.80s' is not an environment name",
					in->name, s);
		break;
	case KILN_INPUT_STRING:
		break;
	}
	*out = json_string(s);
	return *out ? 0 : kiln_err(EINVAL, "input '%s': not valid UTF-8", in->name);
}

int kiln_trigger_dispatch_inputs(const kiln_event *ev, json_t *given, json_t **out)
{
	*out = NULL;
	if (given && !json_is_null(given) && !json_is_object(given))
		return kiln_err(EINVAL, "inputs: expected an object of name: value");
	const char *key;
	json_t *v;
	json_object_foreach(given, key, v)
	{
		if (!find_input(ev, key))
			return kiln_err(EINVAL, "unexpected input '%.80s': the workflow declares no such "
						"workflow_dispatch input",
					key);
	}
	json_t *o = json_object();
	for (size_t i = 0; ev && i < ev->ninputs; i++) {
		const kiln_input *in = &ev->inputs[i];
		_cleanup_free_ char *s = NULL;
		int r = value_text(in->name, json_object_get(given, in->name), &s);
		if (r == 0 && !s && in->default_value)
			s = kiln_strdup(in->default_value);
		if (r == 0 && in->required && (!s || !*s))
			r = kiln_err(EINVAL, "input '%s' is required", in->name);
		json_t *tv = NULL;
		if (r == 0 && !s)
			tv = in->type == KILN_INPUT_BOOLEAN ? json_false() : json_string("");
		else if (r == 0)
			r = typed_value(in, s, &tv);
		if (r < 0) {
			json_decref(o);
			return r;
		}
		json_object_set_new(o, in->name, tv);
	}
	*out = o;
	return 0;
}
