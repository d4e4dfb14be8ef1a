/* examples/sandbox.c: run untrusted code with nothing that reaches the system, 16 MiB of memory
 * and a bounded run time between returns to the loop. usage: sandbox CODE */
#include <stdio.h>

#include <rill.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CODE\n", argv[0]);
    return 2;
  }
  rill_options opts = {0};
  opts.deny = RILL_DENY_ALL;        /* no files, processes, network, io, os, debug, ... */
  opts.max_memory = 16 << 20;       /* bytes of Lua heap */
  opts.max_instructions = 10000000; /* per turn of the loop */
  rill_engine *e = rill_new_ex(NULL, &opts);
  if (e == NULL) return 1;
  int status = rill_dostring(e, argv[1]);
  if (status == RILL_OK) status = rill_run(e, RILL_RUN_DEFAULT);
  if (status == RILL_ERRRUN || status == RILL_ERRSYNTAX) printf("error: %s\n", rill_errmsg(e));
  printf("memory in use: %zu bytes\n", rill_memory(e));
  rill_free(e);
  return status == RILL_OK ? 0 : 1;
}
