/* bindings/main.c: the `rill` command: run a script, a string or stdin as the main task. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rill.h"

static const char *progname = "rill";

static void usage(FILE *f) {
  fprintf(f,
          "usage: %s [options] [SCRIPT.lua [ARGS...]]\n"
          "  SCRIPT.lua ARGS   run a script, then the loop until no work is left\n"
          "  -e CODE ARGS      run a string\n"
          "  -                 read the script from stdin\n"
          "  -i SCRIPT.lua     run the script, then the interactive prompt\n"
          "  --version         print the version\n"
          "  --help            print this help\n"
          "With no arguments: the interactive prompt on a terminal, else the script from stdin.\n",
          progname);
}

/* Prints the engine's error once, as lua.c's report does. */
static int report(rill_engine *e, int status) {
  if (status == RILL_OK || status == RILL_EXIT) return status;
  const char *msg = rill_errmsg(e);
  fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(no error message)");
  fflush(stderr);
  return status;
}

int main(int argc, char **argv) {
  int script = 1; /* index of the script (or -e's code) in argv */
  int is_code = 0, interactive = 0;
  if (argc > 0 && argv[0][0]) progname = argv[0];
  if (argc >= 2) {
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0) {
      printf("rill %s\n", RILL_VERSION);
      return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(argv[1], "-e") == 0 || strcmp(argv[1], "-i") == 0) {
      if (argc < 3) {
        fprintf(stderr, "%s: '%s' needs an argument\n", progname, argv[1]);
        usage(stderr);
        return 1;
      }
      is_code = argv[1][1] == 'e';
      interactive = argv[1][1] == 'i';
      script = 2;
    } else if (argv[1][0] == '-' && argv[1][1] != '\0') {
      fprintf(stderr, "%s: unrecognized option '%s'\n", progname, argv[1]);
      usage(stderr);
      return 1;
    }
  } else if (isatty(STDIN_FILENO)) {
    interactive = 1; /* no script: the REPL alone */
  }

  /* A write to a closed pipe is an EPIPE error for the stream to handle, not a fatal signal. */
  signal(SIGPIPE, SIG_IGN);

  /* A closed fd 0, 1 or 2 would be reused by the loop's own descriptors (epoll, eventfd) and
   * then read or written as stdio: give it /dev/null, as Node does. open() takes the lowest
   * free number, so the holes fill in order. */
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) < 0) return 1;
  }

  rill_engine *e = rill_new(NULL);
  if (e == NULL) {
    fprintf(stderr, "%s: cannot create the engine (out of memory)\n", progname);
    return 1;
  }
  const char *name = argc > script ? argv[script] : "-";
  rill_set_argv(e, argc > script ? argc - script : 0, argv + script);
  int status = RILL_OK;
  if (is_code)
    status = rill_dostring(e, argv[script]);
  else if (!interactive || argc > script)
    status = rill_dofile(e, strcmp(name, "-") == 0 ? NULL : name);
  /* The REPL starts right after the script's main chunk, not after the loop ran dry: a script
   * that serves or streams keeps doing so while the prompt is up (lua/rill/repl.lua). */
  if (interactive && status == RILL_OK) status = rill_dostring(e, "require('rill.repl').start()");
  if (status == RILL_OK) status = rill_run(e, RILL_RUN_DEFAULT);
  report(e, status);
  int code = status == RILL_OK ? 0 : status == RILL_EXIT ? rill_exit_code(e) : 1;
  rill_free(e);
  return code;
}
