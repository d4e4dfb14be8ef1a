/* core/proc.c: child processes with their stdin, stdout and stderr as native streams. */
#include "proc.h"

#include <stdlib.h>
#include <string.h>

#include "uvstream.h"

struct rill_proc_s {
  uv_process_t proc;
  rill_handle_t h;
  rill_loop_t *loop;
  rill_stream_t *streams[3];
  rill_proc_exit_cb cb;
  void *arg;
  int pid;
  int exited, closing, closed, released;
  int64_t status;
  int signal;
};

static void proc_closed(rill_handle_t *h) {
  rill_proc_t *p = RILL_CONTAINER_OF(h, rill_proc_t, h);
  p->closed = 1;
  if (p->released) free(p);
}

static void close_handle(rill_proc_t *p) {
  if (p->closing) return;
  p->closing = 1;
  rill_handle_close(&p->h);
}

static void proc_exited(uv_process_t *proc, int64_t status, int signal) {
  rill_proc_t *p = RILL_CONTAINER_OF(proc, rill_proc_t, proc);
  p->exited = 1;
  p->status = status;
  p->signal = signal;
  rill_proc_exit_cb cb = p->cb;
  p->cb = NULL;
  /* Reaped: the handle has nothing left to do. */
  close_handle(p);
  if (cb) cb(p, status, signal, p->arg);
}

int rill_proc_spawn(rill_loop_t *loop, const rill_proc_opts_t *o, rill_proc_exit_cb cb, void *arg,
                    rill_proc_t **out) {
  if (loop == NULL || o == NULL || o->file == NULL || o->args == NULL || out == NULL)
    return UV_EINVAL;
  for (int i = 0; i < 3; i++)
    if (o->stdio[i] < RILL_PROC_PIPE || o->stdio[i] > RILL_PROC_IGNORE) return UV_EINVAL;
  rill_proc_t *p = calloc(1, sizeof *p);
  if (p == NULL) return UV_ENOMEM;
  p->loop = loop;
  p->cb = cb;
  p->arg = arg;
  uv_stdio_container_t stdio[3];
  rill_uvs_t *u[3] = {NULL, NULL, NULL};
  int e = 0;
  for (int i = 0; i < 3 && e == 0; i++) {
    if (o->stdio[i] == RILL_PROC_PIPE) {
      unsigned side = i == 0 ? RILL_STREAM_WRITABLE : RILL_STREAM_READABLE;
      e = rill_uvs_new(loop, RILL_UVS_PIPE, side, 0, &u[i], &p->streams[i]);
      if (e) break;
      stdio[i].flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
      stdio[i].data.stream = &u[i]->u.stream;
    } else if (o->stdio[i] == RILL_PROC_INHERIT) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
    } else {
      stdio[i].flags = UV_IGNORE;
    }
  }
  if (e == 0) {
    uv_process_options_t po;
    memset(&po, 0, sizeof po);
    po.file = o->file;
    po.args = o->args;
    po.env = o->env;
    po.cwd = o->cwd;
    po.exit_cb = proc_exited;
    po.stdio = stdio;
    po.stdio_count = 3;
    e = uv_spawn(loop->uv, &p->proc, &po);
    /* Even a failed spawn leaves an initialised handle that must be closed. */
    rill_handle_track(loop, &p->h, (uv_handle_t *)&p->proc, proc_closed);
  }
  if (e) {
    for (int i = 0; i < 3; i++) {
      if (p->streams[i]) {
        rill_stream_destroy(p->streams[i], NULL);
        rill_stream_unref(p->streams[i]);
      }
    }
    if (p->h.uv) {
      p->released = 1;
      close_handle(p);
    } else {
      free(p);
    }
    return e;
  }
  p->pid = p->proc.pid;
  for (int i = 0; i < 3; i++)
    if (u[i]) rill_uvs_ready(u[i]);
  *out = p;
  return 0;
}

rill_stream_t *rill_proc_stream(rill_proc_t *p, int fd) {
  return fd >= 0 && fd < 3 ? p->streams[fd] : NULL;
}

int rill_proc_pid(const rill_proc_t *p) {
  return p->pid;
}

int rill_proc_kill(rill_proc_t *p, int signum) {
  if (p->exited || p->closing) return UV_ESRCH;
  return uv_process_kill(&p->proc, signum);
}

int rill_proc_exited(const rill_proc_t *p, int64_t *status, int *signal) {
  if (!p->exited) return 0;
  if (status) *status = p->status;
  if (signal) *signal = p->signal;
  return 1;
}

void rill_proc_free(rill_proc_t *p) {
  if (p == NULL) return;
  p->cb = NULL;
  for (int i = 0; i < 3; i++) {
    if (p->streams[i]) {
      rill_stream_unref(p->streams[i]);
      p->streams[i] = NULL;
    }
  }
  p->released = 1;
  if (p->closed) free(p);
  /* Still running: the handle stays until the child exits, so it is reaped. */
}
