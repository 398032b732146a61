/*
 * test_qpu.c - unit harness for qpu.c, without Slurm.
 *
 * It #includes the plugin itself and stubs the few SPANK calls the plugin makes, so both the pure parts
 * (name validation, env-file parsing) and the hook logic (contexts, fail modes) run in a plain process,
 * under valgrind if wanted. The env file's owner must be the caller (instead of root) here.
 *
 *   test_qpu validate [--max N] VALUE    prints "ok" (exit 0) or the error (exit 1)
 *   test_qpu env PATH                    prints "var K=V", "error=MSG", "mode=open|closed" lines (exit 0),
 *                                        "missing" (exit 3) or "bad: MSG" (exit 1)
 *   test_qpu plugin [--ctx allocator|local|remote|slurmd] [--arg ARG]... [--qpu VALUE] [--env K=V]...
 *                   [--job N] [--task N] [--setenv-fails 1]
 *                                        runs init, the --qpu callback, init_post_opt and (remote)
 *                                        task_init_privileged + task_init like Slurm does, printing
 *                                        "HOOK=rc" and every SPANK call; stops at the first failing hook
 *   test_qpu selftest                    built-in checks, for `make test`
 */
#define QPU_ENV_OWNER_UID (getuid())
#include "qpu.c"

#include <stdarg.h>

/* ------------------------------------------------------------------ SPANK stubs */

struct spank_handle {
	int unused;
};

static spank_context_t t_ctx = S_CTX_ALLOCATOR;
static struct spank_option *t_opt;
static uint32_t t_jobid = 42;
static int t_taskid;
static int t_setenv_fails;
static const char *t_env[32];
static int t_nenv;

spank_context_t spank_context(void) { return t_ctx; }
int spank_remote(spank_t sp) { (void)sp; return t_ctx == S_CTX_REMOTE; }
const char *spank_strerror(spank_err_t err) { return err == ESPANK_SUCCESS ? "success" : "stub failure"; }

spank_err_t spank_option_register(spank_t sp, struct spank_option *opt)
{
	(void)sp;
	t_opt = opt;
	printf("option_register --%s=%s: %s\n", opt->name, opt->arginfo, opt->usage);
	return ESPANK_SUCCESS;
}

spank_err_t spank_get_item(spank_t sp, spank_item_t item, ...)
{
	va_list ap;
	spank_err_t rc = ESPANK_SUCCESS;

	(void)sp;
	va_start(ap, item);
	if (item == S_JOB_ID && t_ctx == S_CTX_REMOTE)
		*va_arg(ap, uint32_t *) = t_jobid;
	else if (item == S_TASK_ID && t_ctx == S_CTX_REMOTE)
		*va_arg(ap, int *) = t_taskid;
	else
		rc = ESPANK_NOT_AVAIL;
	va_end(ap);
	return rc;
}

spank_err_t spank_getenv(spank_t sp, const char *var, char *buf, int len)
{
	size_t n = strlen(var);
	int i;

	(void)sp;
	if (t_ctx != S_CTX_REMOTE)
		return ESPANK_NOT_REMOTE;
	for (i = 0; i < t_nenv; i++) {
		if (strncmp(t_env[i], var, n) == 0 && t_env[i][n] == '=') {
			if (strlen(t_env[i] + n + 1) >= (size_t)len)
				return ESPANK_NOSPACE;
			strcpy(buf, t_env[i] + n + 1);
			return ESPANK_SUCCESS;
		}
	}
	return ESPANK_ENV_NOEXIST;
}

spank_err_t spank_setenv(spank_t sp, const char *var, const char *val, int overwrite)
{
	(void)sp;
	if (t_ctx != S_CTX_REMOTE)
		return ESPANK_NOT_REMOTE;
	if (t_setenv_fails)
		return ESPANK_ERROR;
	printf("setenv %s=%s (overwrite=%d)\n", var, val, overwrite);
	return ESPANK_SUCCESS;
}

spank_err_t spank_job_control_setenv(spank_t sp, const char *var, const char *val, int overwrite)
{
	(void)sp;
	if (t_ctx == S_CTX_REMOTE)
		return ESPANK_NOT_LOCAL;
	printf("job_control_setenv %s=%s (overwrite=%d)\n", var, val, overwrite);
	return ESPANK_SUCCESS;
}

void slurm_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("slurm_error: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

void slurm_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("slurm_info: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

/* ------------------------------------------------------------------ commands */

static int cmd_validate(int argc, char **argv)
{
	char err[QPU_ERR_LEN];
	unsigned max = QPU_MAX_NAMES_DEFAULT;

	if (argc >= 2 && strcmp(argv[0], "--max") == 0) {
		max = (unsigned)atoi(argv[1]);
		argc -= 2;
		argv += 2;
	}
	if (argc != 1)
		return 2;
	if (qpu_validate(argv[0], max, err, sizeof(err)) == 0) {
		printf("ok\n");
		return 0;
	}
	printf("%s\n", err);
	return 1;
}

static int cmd_env(const char *path)
{
	char err[QPU_ERR_LEN];
	struct qpu_env e;
	size_t i;

	switch (qpu_env_load(path, getuid(), &e, err, sizeof(err))) {
	case QPU_ENV_MISSING:
		printf("missing\n");
		return 3;
	case QPU_ENV_BAD:
		printf("bad: %s\n", err);
		return 1;
	}
	for (i = 0; i < e.n; i++)
		printf("var %s=%s\n", e.key[i], e.val[i]);
	if (e.error)
		printf("error=%s\n", e.error);
	if (e.mode != QPU_MODE_UNSET)
		printf("mode=%s\n", e.mode == QPU_MODE_OPEN ? "open" : "closed");
	qpu_env_free(&e);
	return 0;
}

static int cmd_plugin(int argc, char **argv)
{
	struct spank_handle h = {0};
	char *args[16];
	const char *qpu = NULL;
	int i, ac = 0, rc;

	for (i = 0; i + 1 < argc; i += 2) {
		const char *o = argv[i], *v = argv[i + 1];
		if (strcmp(o, "--ctx") == 0)
			t_ctx = strcmp(v, "local") == 0 ? S_CTX_LOCAL : strcmp(v, "remote") == 0 ? S_CTX_REMOTE :
				strcmp(v, "slurmd") == 0 ? S_CTX_SLURMD : S_CTX_ALLOCATOR;
		else if (strcmp(o, "--arg") == 0 && ac < 16)
			args[ac++] = argv[i + 1];
		else if (strcmp(o, "--qpu") == 0)
			qpu = v;
		else if (strcmp(o, "--env") == 0 && t_nenv < 32)
			t_env[t_nenv++] = v;
		else if (strcmp(o, "--job") == 0)
			t_jobid = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(o, "--task") == 0)
			t_taskid = atoi(v);
		else if (strcmp(o, "--setenv-fails") == 0)
			t_setenv_fails = atoi(v);
		else
			return 2;
	}
	if (i != argc)
		return 2;
	fflush(stdout);
#define HOOK(name, call)                                   \
	do {                                               \
		rc = (call);                               \
		printf("%s=%d\n", name, rc);               \
		fflush(stdout);                            \
		if (rc < 0)                                \
			return 1;                          \
	} while (0)
	HOOK("init", slurm_spank_init(&h, ac, args));
	if (qpu != NULL) {
		if (t_opt == NULL) {
			printf("option=unregistered\n");
			return 1;
		}
		HOOK("option", t_opt->cb(t_opt->val, qpu, t_ctx == S_CTX_REMOTE));
	}
	HOOK("init_post_opt", slurm_spank_init_post_opt(&h, ac, args));
	if (t_ctx == S_CTX_REMOTE) {
		HOOK("task_init_privileged", slurm_spank_task_init_privileged(&h, ac, args));
		HOOK("task_init", slurm_spank_task_init(&h, ac, args));
	}
	return 0;
}

/* ------------------------------------------------------------------ selftest (make test) */

static int failures;

static void expect_valid(const char *value, int ok, const char *needle)
{
	char err[QPU_ERR_LEN] = "";
	int rc = qpu_validate(value, QPU_MAX_NAMES_DEFAULT, err, sizeof(err));

	if ((rc == 0) != ok || (needle && !strstr(err, needle))) {
		printf("FAIL validate(\"%.60s\") = %d, \"%s\" (expected %s, \"%s\")\n", value, rc, err,
		       ok ? "ok" : "error", needle ? needle : "");
		failures++;
	}
}

static void expect_env(const char *text, int rc_expected, const char *needle)
{
	char path[] = "/tmp/test_qpu.XXXXXX", err[QPU_ERR_LEN] = "";
	struct qpu_env e;
	int fd = mkstemp(path), rc;

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		printf("FAIL cannot write %s\n", path);
		failures++;
		return;
	}
	close(fd);
	rc = qpu_env_load(path, getuid(), &e, err, sizeof(err));
	unlink(path);
	if (rc != rc_expected || (needle && !strstr(err, needle))) {
		printf("FAIL env(\"%.60s\") = %d, \"%s\" (expected %d, \"%s\")\n", text, rc, err, rc_expected,
		       needle ? needle : "");
		failures++;
	}
	if (rc == QPU_ENV_OK)
		qpu_env_free(&e);
}

static int cmd_selftest(void)
{
	char big[10241];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	expect_valid("ibm_torino", 1, NULL);
	expect_valid("ibm_torino,ibm_fez,a.b-c_9", 1, NULL);
	expect_valid("a,b,c,d,e,f,g,h", 1, NULL);
	expect_valid("", 0, "at least one");
	expect_valid("a,,b", 0, "name 2");
	expect_valid("a,", 0, "name 2");
	expect_valid(",a", 0, "name 1");
	expect_valid(";rm -rf /", 0, "\\x3brm\\x20-rf\\x20/");
	expect_valid("$(id)", 0, "\\x24\\x28id\\x29");
	expect_valid(big, 0, "10240 bytes");
	expect_valid("a,b,c,d,e,f,g,h,i", 0, "9 QPUs");
	expect_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, "65 bytes");
	expect_valid("a,b,a", 0, "more than once");
	expect_valid("ab,a", 1, NULL);
	expect_valid("ibm_t\xc3\xb6rino", 0, "non-ASCII byte \\xc3");
	expect_env("# c\nA=1\nB=x=y\n\nQAUVERN_HPC_ERROR=boom\nQAUVERN_HPC_FAIL_MODE=open\n", QPU_ENV_OK, NULL);
	expect_env("1A=1\n", QPU_ENV_BAD, "invalid variable name");
	expect_env("A=1\nA=2\n", QPU_ENV_BAD, "set twice");
	expect_env("QAUVERN_HPC_FAIL_MODE=maybe\n", QPU_ENV_BAD, "open or closed");
	expect_env("novalue\n", QPU_ENV_BAD, "not KEY=VALUE");
	if (failures == 0)
		printf("selftest: all checks passed\n");
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "validate") == 0)
		return cmd_validate(argc - 2, argv + 2);
	if (argc == 3 && strcmp(argv[1], "env") == 0)
		return cmd_env(argv[2]);
	if (argc >= 2 && strcmp(argv[1], "plugin") == 0)
		return cmd_plugin(argc - 2, argv + 2);
	if (argc == 2 && strcmp(argv[1], "selftest") == 0)
		return cmd_selftest();
	fprintf(stderr, "usage: test_qpu validate|env|plugin|selftest ... (see test_qpu.c)\n");
	return 2;
}
