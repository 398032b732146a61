/*
 * qpu.c - qauvern-hpc SPANK plugin: `--qpu=<name>[,<name>]` for sbatch, salloc and srun.
 *
 * Policy lives in Python; this plugin only
 *   1. checks the syntax of --qpu in every context and refuses a bad value at submit time,
 *   2. hands the value to the controller: spank_job_control_setenv("QPU") gives SPANK_QPU to
 *      PrologSlurmctld, QPU in job_submit.lua's spank_job_env and SLURM_SPANK_QPU to the job,
 *   3. in slurmstepd (remote context) exports `{state_dir}/jobs/{jobid}.env`, which the controller's
 *      qauvern-hpc-prolog prepared, into every task.
 * The value of --qpu never reaches a shell. Contract, plugin arguments and Slurm call order: README.md.
 *
 * Build: gcc -Wall -Wextra -Werror -O2 -fPIC -shared -I/usr/include -o qpu.so qpu.c (see Makefile).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <slurm/spank.h>

SPANK_PLUGIN(qauvern_qpu, 1) /* the macro brings its own semicolons */

#define QPU_MAX_NAMES_DEFAULT 8
#define QPU_MAX_NAMES_LIMIT 64 /* highest max_names= plugin argument */
#define QPU_NAME_MAX 64        /* bytes per name */
#define QPU_VALUE_MAX 1024     /* bytes of the whole --qpu value */
#define QPU_ECHO_MAX 40        /* bytes of untrusted input ever echoed in a message */
#define QPU_ESC_LEN (QPU_ECHO_MAX * 4 + 8)
#define QPU_ERR_LEN 1024
#define QPU_ENV_LINE_MAX (64 * 1024)
#define QPU_ENV_VARS_MAX 256
#define QPU_ENV_FILE_MAX (1024 * 1024)
#define QPU_ERROR_KEY "QAUVERN_HPC_ERROR"
#define QPU_MODE_KEY "QAUVERN_HPC_FAIL_MODE"
#ifndef QPU_ENV_OWNER_UID /* the unit harness (test_qpu.c) uses getuid() */
#define QPU_ENV_OWNER_UID ((uid_t)0)
#endif

enum { QPU_MODE_UNSET = -1, QPU_MODE_CLOSED = 0, QPU_MODE_OPEN = 1 };
enum { QPU_ENV_BAD = -1, QPU_ENV_OK = 0, QPU_ENV_MISSING = 1 };

/* ------------------------------------------------------------ pure helpers: no SPANK calls, unit-tested */

/* snprintf that truncates on purpose (messages are cut, never overflowed). Returns -1, so that error paths
 * read `return qpu_fmt(err, errlen, ...)`. */
__attribute__((format(printf, 3, 4))) static int qpu_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(buf, len, fmt, ap) < 0)
		buf[0] = '\0';
	va_end(ap);
	return -1;
}

static int qpu_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
static int qpu_alnum(char c) { return qpu_alpha(c) || (c >= '0' && c <= '9'); }
static int qpu_name_char(char c) { return qpu_alnum(c) || c == '.' || c == '-'; }

/* Shell- and terminal-safe rendering of untrusted bytes: at most QPU_ECHO_MAX of them, each byte outside
 * [A-Za-z0-9_.,:/=+@-] as \xHH, "..." when cut. `out` holds QPU_ESC_LEN bytes. */
static const char *qpu_escape(const char *s, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	for (i = 0; i < n && i < QPU_ECHO_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		if (qpu_name_char((char)c) || (c && strchr(",:/=+@", c))) {
			out[o++] = (char)c;
		} else {
			memcpy(out + o, "\\x", 2);
			out[o + 2] = hex[c >> 4];
			out[o + 3] = hex[c & 15];
			o += 4;
		}
	}
	strcpy(out + o, i < n ? "..." : "");
	return out;
}

/* A --qpu value: 1..max_names comma-separated names, each 1..64 bytes of [A-Za-z0-9_.-], no empty item,
 * no duplicate, at most 1024 bytes in all. Returns 0, or -1 with a message naming the offending item. */
static int qpu_validate(const char *value, unsigned max_names, char *err, size_t errlen)
{
	char esc[QPU_ESC_LEN];
	size_t len, start, i, j, n, count = 1, pos = 0;

	if (value == NULL || value[0] == '\0')
		return qpu_fmt(err, errlen, "qpu: --qpu needs at least one QPU name, e.g. --qpu=ibm_torino");
	len = strlen(value);
	if (len > QPU_VALUE_MAX)
		return qpu_fmt(err, errlen, "qpu: --qpu value is %zu bytes long, at most %d are allowed "
			       "(it starts \"%s\")", len, QPU_VALUE_MAX, qpu_escape(value, len, esc));
	for (i = 0; i < len; i++)
		count += value[i] == ',';
	if (count > max_names)
		return qpu_fmt(err, errlen, "qpu: --qpu names %zu QPUs, at most %u are allowed", count, max_names);
	for (start = 0; start <= len; start = i + 1) {
		for (i = start; value[i] != '\0' && value[i] != ','; i++)
			;
		n = i - start;
		pos++;
		if (n == 0)
			return qpu_fmt(err, errlen, "qpu: QPU name %zu of --qpu=\"%s\" is empty (a leading, trailing "
				       "or doubled comma?)", pos, qpu_escape(value, len, esc));
		if (n > QPU_NAME_MAX)
			return qpu_fmt(err, errlen, "qpu: QPU name \"%s\" is %zu bytes long, at most %d are allowed",
				       qpu_escape(value + start, n, esc), n, QPU_NAME_MAX);
		for (j = start; j < i; j++)
			if (!qpu_name_char(value[j]))
				return qpu_fmt(err, errlen, "qpu: QPU name \"%s\" has the invalid %sbyte \\x%02x at "
					       "offset %zu (allowed: A-Z a-z 0-9 _ . -)",
					       qpu_escape(value + start, n, esc), value[j] & 0x80 ? "non-ASCII " : "",
					       (unsigned char)value[j], j - start);
		for (j = 0; j + n < start; j++) /* an earlier complete item equal to this one */
			if ((j == 0 || value[j - 1] == ',') && value[j + n] == ',' &&
			    memcmp(value + j, value + start, n) == 0)
				return qpu_fmt(err, errlen, "qpu: QPU name \"%s\" is given more than once in --qpu",
					       qpu_escape(value + start, n, esc));
	}
	return 0;
}

/* A parsed env file. key/val point into buf, which the struct owns (qpu_env_free). */
struct qpu_env {
	char *buf;
	size_t n;
	const char *key[QPU_ENV_VARS_MAX];
	const char *val[QPU_ENV_VARS_MAX];
	const char *error; /* QAUVERN_HPC_ERROR, NULL when absent */
	int mode;          /* QAUVERN_HPC_FAIL_MODE as QPU_MODE_* */
};

static void qpu_env_free(struct qpu_env *e)
{
	free(e->buf);
	e->buf = NULL;
	e->n = 0;
}

/* Parse buf[0..len) in place (buf[len] must exist): KEY=VALUE lines split at the first '=', the value raw
 * (no quoting, may hold '='); empty lines and lines starting with '#' are skipped. Strict: key charset
 * [A-Za-z_][A-Za-z0-9_]*, no NUL byte, lines <= 64 KiB, <= 256 assignments, no key set twice. */
static int qpu_env_parse(struct qpu_env *e, char *buf, size_t len, char *err, size_t errlen)
{
	char esc[QPU_ESC_LEN], *p, *end = buf + len, *eol, *eq, *k;
	unsigned line = 0;
	size_t i, total = 0;

	e->n = 0;
	e->error = NULL;
	e->mode = QPU_MODE_UNSET;
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL)
		return qpu_fmt(err, errlen, "contains a NUL byte");
	for (p = buf; p < end; p = eol + 1) {
		line++;
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end;
		if (eol - p > QPU_ENV_LINE_MAX)
			return qpu_fmt(err, errlen, "line %u is longer than %d bytes", line, QPU_ENV_LINE_MAX);
		*eol = '\0';
		if (*p == '\0' || *p == '#')
			continue;
		if ((eq = strchr(p, '=')) == NULL)
			return qpu_fmt(err, errlen, "line %u is not KEY=VALUE: \"%s\"", line, qpu_escape(p, strlen(p), esc));
		*eq = '\0';
		for (k = p + 1; qpu_alnum(*k); k++)
			;
		if (!qpu_alpha(*p) || *k != '\0')
			return qpu_fmt(err, errlen, "line %u: invalid variable name \"%s\"", line,
				       qpu_escape(p, strlen(p), esc));
		if (++total > QPU_ENV_VARS_MAX)
			return qpu_fmt(err, errlen, "more than %d variables", QPU_ENV_VARS_MAX);
		for (i = 0; i < e->n && strcmp(e->key[i], p) != 0; i++)
			;
		if (i < e->n || (strcmp(p, QPU_ERROR_KEY) == 0 && e->error) ||
		    (strcmp(p, QPU_MODE_KEY) == 0 && e->mode != QPU_MODE_UNSET))
			return qpu_fmt(err, errlen, "line %u: %s is set twice", line, p);
		if (strcmp(p, QPU_ERROR_KEY) == 0) {
			e->error = eq[1] ? eq + 1 : "(no details given)";
		} else if (strcmp(p, QPU_MODE_KEY) != 0) {
			e->key[e->n] = p;
			e->val[e->n++] = eq + 1;
		} else if (strcmp(eq + 1, "open") == 0 || strcmp(eq + 1, "closed") == 0) {
			e->mode = eq[1] == 'o' ? QPU_MODE_OPEN : QPU_MODE_CLOSED;
		} else {
			return qpu_fmt(err, errlen, "line %u: %s must be open or closed, not \"%s\"", line, p,
				       qpu_escape(eq + 1, strlen(eq + 1), esc));
		}
	}
	return 0;
}

/* Read and parse `path`. QPU_ENV_MISSING: there is no such file. QPU_ENV_BAD: message in err, e empty.
 * Refuses symlinks (O_NOFOLLOW), non-regular files (O_NONBLOCK: a FIFO cannot block us), files not owned
 * by `owner`, group/world-writable files, hard links and files over 1 MiB. */
static int qpu_env_load(const char *path, uid_t owner, struct qpu_env *e, char *err, size_t errlen)
{
	char m[QPU_ERR_LEN] = "";
	struct stat st;
	size_t got = 0;
	ssize_t r;
	int fd;

	memset(e, 0, sizeof(*e));
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0) {
		if (errno == ENOENT)
			return QPU_ENV_MISSING;
		qpu_fmt(err, errlen, "cannot open %s: %s", path,
			errno == ELOOP ? "it is a symbolic link" : strerror(errno));
		return QPU_ENV_BAD;
	}
	if (fstat(fd, &st) < 0)
		qpu_fmt(m, sizeof(m), "fstat: %s", strerror(errno));
	else if (!S_ISREG(st.st_mode))
		qpu_fmt(m, sizeof(m), "not a regular file");
	else if (st.st_uid != owner)
		qpu_fmt(m, sizeof(m), "owned by uid %u, not %u", (unsigned)st.st_uid, (unsigned)owner);
	else if (st.st_mode & (S_IWGRP | S_IWOTH))
		qpu_fmt(m, sizeof(m), "group- or world-writable (mode %04o)", (unsigned)(st.st_mode & 07777));
	else if (st.st_nlink != 1)
		qpu_fmt(m, sizeof(m), "has %lu hard links", (unsigned long)st.st_nlink);
	else if (st.st_size > QPU_ENV_FILE_MAX)
		qpu_fmt(m, sizeof(m), "larger than %d bytes", QPU_ENV_FILE_MAX);
	else if ((e->buf = malloc((size_t)st.st_size + 1)) == NULL)
		qpu_fmt(m, sizeof(m), "out of memory");
	while (!m[0] && got < (size_t)st.st_size) {
		if ((r = read(fd, e->buf + got, (size_t)st.st_size - got)) < 0 && errno == EINTR)
			continue;
		if (r < 0)
			qpu_fmt(m, sizeof(m), "read: %s", strerror(errno));
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (!m[0] && qpu_env_parse(e, e->buf, got, m, sizeof(m)) == 0)
		return QPU_ENV_OK;
	qpu_env_free(e);
	qpu_fmt(err, errlen, "refusing %s: %s", path, m);
	return QPU_ENV_BAD;
}

/* ------------------------------------------------------------ plugin state and arguments */

static char g_state_dir[PATH_MAX - 32] = "/var/lib/qauvern-hpc";
static int g_default_mode = QPU_MODE_CLOSED;
static unsigned g_max_names = QPU_MAX_NAMES_DEFAULT;

static int g_opt_given;               /* the --qpu callback ran in this process */
static int g_opt_valid;               /* ... and accepted the value, kept in g_qpu */
static char g_qpu[QPU_VALUE_MAX + 1];
static char g_pending[QPU_ERR_LEN];   /* remote: what to tell the user on stderr in task_init */
static int g_pending_fatal;           /* ... and whether task_init then fails the task */

/* plugstack.conf arguments. Logs every bad one; returns -1 if there was any. */
static int qpu_parse_args(int ac, char **av)
{
	char esc[QPU_ESC_LEN], *end;
	unsigned long n;
	int i, bad = 0;

	for (i = 0; i < ac; i++) {
		const char *a = av[i];
		if (strncmp(a, "state_dir=", 10) == 0 && a[10] == '/' && strlen(a + 10) < sizeof(g_state_dir)) {
			strcpy(g_state_dir, a + 10);
		} else if (strcmp(a, "default_fail_mode=closed") == 0 || strcmp(a, "default_fail_mode=open") == 0) {
			g_default_mode = a[18] == 'o' ? QPU_MODE_OPEN : QPU_MODE_CLOSED;
		} else if (strncmp(a, "max_names=", 10) == 0 && a[10] >= '1' && a[10] <= '9' &&
			   (n = strtoul(a + 10, &end, 10)) <= QPU_MAX_NAMES_LIMIT && *end == '\0') {
			g_max_names = (unsigned)n;
		} else {
			slurm_error("qpu: plugstack.conf: bad argument \"%s\" (known: state_dir=/ABSOLUTE/PATH, "
				    "default_fail_mode=closed|open, max_names=1..%d)",
				    qpu_escape(a, strlen(a), esc), QPU_MAX_NAMES_LIMIT);
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

/* ------------------------------------------------------------ SPANK entry points */

/* Called by sbatch/salloc/srun for --qpu (also from #SBATCH lines and the SLURM_SPANK_* option variable),
 * and again in slurmstepd (remote=1) with the value the job carries. */
static int qpu_opt_cb(int val, const char *optarg, int remote)
{
	char err[QPU_ERR_LEN];

	(void)val;
	(void)remote;
	g_opt_given = 1;
	g_opt_valid = qpu_validate(optarg, g_max_names, err, sizeof(err)) == 0;
	if (!g_opt_valid) {
		slurm_error("%s", err);
		return -1; /* negative: the command refuses the job before it contacts the controller */
	}
	strcpy(g_qpu, optarg); /* fits: validated <= QPU_VALUE_MAX */
	return 0;
}

static struct spank_option qpu_option = {
	"qpu", "name[,name...]", "Quantum resources (QPUs) for this job, comma-separated, e.g. --qpu=ibm_torino",
	1, 0, qpu_opt_cb,
};

/* Every context calls init. A bad plugin argument fails sbatch/salloc/srun (the admin sees it at once, on a
 * login node), but in slurmstepd/slurmd it is only logged: a typo must not fail every job on a node.
 * spank_option_register, because sbatch 22.05 ignores a bare spank_options[] table. */
int slurm_spank_init(spank_t sp, int ac, char **av)
{
	spank_context_t ctx = spank_context();
	int strict = ctx == S_CTX_LOCAL || ctx == S_CTX_ALLOCATOR;

	if (qpu_parse_args(ac, av) < 0 && strict)
		return -1;
	if (!strict && ctx != S_CTX_REMOTE)
		return 0;
	if (spank_option_register(sp, &qpu_option) != ESPANK_SUCCESS) {
		slurm_error("qpu: cannot register the --qpu option");
		return strict ? -1 : 0;
	}
	return 0;
}

/* sbatch/salloc/srun, after all options: hand --qpu to the controller. Without --qpu nothing is set: an srun
 * inside an `sbatch --qpu` job keeps the job's QPU (srun copies SLURM_SPANK_QPU from its environment). */
int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	spank_context_t ctx = spank_context();
	spank_err_t rc;

	(void)ac;
	(void)av;
	if ((ctx != S_CTX_LOCAL && ctx != S_CTX_ALLOCATOR) || !g_opt_given || !g_opt_valid)
		return 0;
	if ((rc = spank_job_control_setenv(sp, "QPU", g_qpu, 1)) != ESPANK_SUCCESS) {
		slurm_error("qpu: cannot pass --qpu to the controller: %s", spank_strerror(rc));
		return -1;
	}
	return 0;
}

/* Record a failure. open: log a warning, the task runs. closed: log an error; task_init fails the task.
 * A closed failure is never downgraded by a later open one. */
static void qpu_fail(int mode, const char *msg)
{
	char clean[QPU_ERR_LEN];
	size_t i;

	qpu_fmt(clean, sizeof(clean), "%s", msg);
	for (i = 0; clean[i]; i++) /* a message from the env file may hold control characters */
		if ((unsigned char)clean[i] < 0x20 || clean[i] == 0x7f)
			clean[i] = '?';
	if (mode == QPU_MODE_OPEN) {
		slurm_info("qpu: warning: %s (fail mode open: the job runs without its QPU environment)", clean);
		if (!g_pending_fatal)
			qpu_fmt(g_pending, sizeof(g_pending), "qpu: warning: %s (the job runs without QPU access)\n",
				clean);
	} else {
		slurm_error("qpu: %s", clean);
		qpu_fmt(g_pending, sizeof(g_pending), "qpu: error: %s\n", clean);
		g_pending_fatal = 1;
	}
}

/* slurmstepd, per task, as root, in the forked task before privileges are dropped: export the env file. */
int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
	char path[PATH_MAX], err[QPU_ERR_LEN], val[QPU_VALUE_MAX + 1], msg[QPU_ERR_LEN + 64];
	struct qpu_env env;
	uint32_t jobid = 0;
	spank_err_t rc;
	size_t i;
	int asked = g_opt_given, mode;

	(void)ac;
	(void)av;
	if (!spank_remote(sp))
		return 0;
	/* Did the job ask for a QPU? The option reached this step, or the job carries SLURM_SPANK_QPU. */
	rc = spank_getenv(sp, "SLURM_SPANK_QPU", val, sizeof(val));
	asked |= rc == ESPANK_NOSPACE || (rc == ESPANK_SUCCESS && val[0]);
	rc = spank_getenv(sp, "SPANK_QPU", val, sizeof(val));
	asked |= rc == ESPANK_NOSPACE || (rc == ESPANK_SUCCESS && val[0]);

	if (spank_get_item(sp, S_JOB_ID, &jobid) != ESPANK_SUCCESS) {
		if (asked)
			qpu_fail(g_default_mode, "cannot determine the job id");
		return 0;
	}
	qpu_fmt(path, sizeof(path), "%s/jobs/%u.env", g_state_dir, (unsigned)jobid);
	switch (qpu_env_load(path, QPU_ENV_OWNER_UID, &env, err, sizeof(err))) {
	case QPU_ENV_MISSING:
		if (asked) {
			qpu_fmt(msg, sizeof(msg), "no QPU environment was prepared for job %u (is PrologSlurmctld set "
				"to qauvern-hpc-prolog?)", (unsigned)jobid);
			qpu_fail(g_default_mode, msg);
		}
		return 0;
	case QPU_ENV_BAD:
		if (asked)
			qpu_fail(g_default_mode, err);
		else /* a broken qpu setup must never affect a job that did not ask for a QPU */
			slurm_error("qpu: job %u did not ask for --qpu; ignoring: %s", (unsigned)jobid, err);
		return 0;
	}
	mode = env.mode == QPU_MODE_UNSET ? g_default_mode : env.mode;
	for (i = 0; i < env.n; i++) {
		if ((rc = spank_setenv(sp, env.key[i], env.val[i], 1)) != ESPANK_SUCCESS) {
			qpu_fmt(msg, sizeof(msg), "cannot set %s in the task environment: %s", env.key[i],
				spank_strerror(rc));
			qpu_fail(mode, msg);
			break;
		}
	}
	if (env.error)
		qpu_fail(mode, env.error);
	qpu_env_free(&env);
	return 0;
}

/* slurmstepd, per task, as the user, once the task's stdout/stderr are connected, just before exec: tell
 * the user (in the job's output) and fail the task. Nothing of the user's runs between the two hooks
 * (Slurm 22.05 slurmstepd: task_init_privileged, drop privileges, connect stdio, task_init, exec). */
int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	int taskid = 0;

	(void)ac;
	(void)av;
	if (!spank_remote(sp) || !g_pending[0])
		return 0;
	/* once per node, not once per task; nothing to do if stderr is gone */
	if (spank_get_item(sp, S_TASK_ID, &taskid) != ESPANK_SUCCESS || taskid == 0)
		if (write(STDERR_FILENO, g_pending, strlen(g_pending)) < 0)
			taskid = -1;
	return g_pending_fatal ? -1 : 0;
}
