/* examples/host.c: the smallest host: run a Lua script (or -e CODE) in an engine, like `rill`. */
#include <stdio.h>
#include <string.h>

#include <rill.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s SCRIPT.lua [ARGS...] | -e CODE\n", argv[0]);
    return 2;
  }
  rill_engine *e = rill_new(NULL); /* NULL: the engine makes its own loop */
  if (e == NULL) {
    fprintf(stderr, "%s: cannot create the engine\n", argv[0]);
    return 1;
  }
  int code = strcmp(argv[1], "-e") == 0 && argc > 2;
  rill_set_argv(e, argc - 1 - code, argv + 1 + code);
  /* The chunk runs as a task up to its first wait; rill_run then runs the loop until no work is
   * left (timers, I/O, waiting tasks). */
  int status = code ? rill_dostring(e, argv[2]) : rill_dofile(e, argv[1]);
  if (status == RILL_OK) status = rill_run(e, RILL_RUN_DEFAULT);
  int exit_status = 0;
  if (status == RILL_EXIT) {
    exit_status = rill_exit_code(e);
  } else if (status != RILL_OK) {
    fprintf(stderr, "%s: %s\n", argv[0], rill_errmsg(e));
    exit_status = 1;
  }
  rill_free(e);
  return exit_status;
}
