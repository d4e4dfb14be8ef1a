/* core/proc.h: child processes with their stdin, stdout and stderr as native streams. */
#ifndef RILL_PROC_H
#define RILL_PROC_H

#include <stdint.h>

#include "stream.h"

/* What each of the child's fds 0-2 is connected to. */
enum { RILL_PROC_PIPE = 0, RILL_PROC_INHERIT = 1, RILL_PROC_IGNORE = 2 };

typedef struct {
  const char *file; /* program: a path, or a name looked up in PATH */
  char **args;      /* argv, args[0] included, NULL-terminated */
  char **env;       /* "K=V" strings, NULL-terminated; NULL: inherit ours */
  const char *cwd;  /* NULL: ours */
  int stdio[3];     /* RILL_PROC_* for fds 0, 1, 2 */
} rill_proc_opts_t;

typedef struct rill_proc_s rill_proc_t;

/* The child exited: status is its exit code, signal the signal that ended it (0: none). */
typedef void (*rill_proc_exit_cb)(rill_proc_t *p, int64_t status, int signal, void *arg);

/* Spawns the child; *out gets the process, owned by the caller until rill_proc_free. Piped
 * stdio are streams (rill_proc_stream). 0, UV_EINVAL, UV_ENOMEM, or the spawn error (ENOENT,
 * EACCES, ...): then nothing is left behind: no handle, no descriptor, no zombie. cb (optional)
 * runs once, from the loop. */
int rill_proc_spawn(rill_loop_t *loop, const rill_proc_opts_t *o, rill_proc_exit_cb cb, void *arg,
                    rill_proc_t **out);
/* The stream of the child's fd (0: its stdin, writable; 1, 2: readable), borrowed; NULL when
 * that fd is not a pipe. */
rill_stream_t *rill_proc_stream(rill_proc_t *p, int fd);
int rill_proc_pid(const rill_proc_t *p);
/* Sends signum; 0, UV_ESRCH once the child has exited, or the kill error. */
int rill_proc_kill(rill_proc_t *p, int signum);
/* 1 and the outcome once the child has exited, else 0. */
int rill_proc_exited(const rill_proc_t *p, int64_t *status, int *signal);
/* Releases the caller's hold: the streams are released (they close when their last owner lets
 * go) and the handle closes once the child has exited (it is reaped; it is not killed). */
void rill_proc_free(rill_proc_t *p);

#endif
