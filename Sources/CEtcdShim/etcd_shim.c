// CEtcdShim — a narrow C API over gRPC core (1.51) for talking to etcd v3. See include/etcd_shim.h.
//
// Design
// ------
// * One client = one grpc_channel + one completion queue (CQ_NEXT) + one poller pthread that loops on
//   grpc_completion_queue_next until GRPC_QUEUE_SHUTDOWN. Every user callback runs on that thread, never
//   while a shim lock is held (so callbacks may call stream_send / cancel / release on any call).
// * Each call object carries three embedded batch tags (no allocation per batch):
//     tag_main  unary: the single six-op batch;   stream: the RECV_STATUS_ON_CLIENT batch
//     tag_recv  stream: SEND_INITIAL_METADATA + RECV_INITIAL_METADATA + RECV_MESSAGE at open, then one
//               RECV_MESSAGE re-armed from each completion
//     tag_send  stream: one SEND_MESSAGE (optionally + SEND_CLOSE_FROM_CLIENT) or SEND_CLOSE_FROM_CLIENT
//   gRPC allows one op of each kind in flight, which these three slots respect.
// * Lifetime. The call object is reference counted: one reference for the caller's handle and one
//   "live" reference held while the grpc_call has batches in flight. `inflight` (guarded by the
//   per-call mutex, which also serialises grpc_call_start_batch) counts batches; when it drops to zero
//   the call has ended: the grpc_call is unref'd right there (on the poller thread), the call is
//   unlinked from the client's list of live calls and the live reference is dropped. A handle that the
//   caller still holds afterwards owns no gRPC resources, so cancel/send/release stay safe even after
//   etcd_shim_client_destroy.
// * Streams: the closed callback fires exactly once, on the poller thread, when the status batch has
//   completed AND no receive is outstanding (so it always follows the last message callback).
// * Destroy: mark shutting down, cancel every live call, wait on a condvar until none is live, shut the
//   CQ down, join the poller, destroy CQ and channel, grpc_shutdown.
// * Methods are registered once per client (grpc_channel_register_call) and cached, so starting a call
//   neither copies nor interns the method path.
// * Several endpoints ("ipv4:a:p,b:p") use gRPC's default pick_first policy: it connects to the first
//   reachable address and fails over to the next when that connection breaks (calls in flight on the
//   broken connection fail with UNAVAILABLE; callers retry). Reconnect backoff is capped at 2 s so a
//   restarted etcd is picked up quickly.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE // pthread_setname_np
#endif
#include "etcd_shim.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Debian builds abseil without NDEBUG, so every absl::Mutex inside gRPC keeps a lock-order graph for deadlock
// detection (absl::synchronization_internal::GraphCycles): about 15 % of the client's user-space instructions per
// unary call under callgrind. That is a debugging aid for abseil's own users; gRPC core does not rely on it. It is
// switched off once per process, before the first grpc_init, through the exported
// absl::SetMutexDeadlockDetectionMode (looked up with dlsym because it is C++ and its inline namespace, "debian3",
// is specific to the installed abseil; if the symbol is not there nothing happens). Setting
// ETCD_SHIM_ABSL_DEADLOCK_DETECTION=keep leaves abseil's default alone (for A/B measurements and for debugging gRPC).
static pthread_once_t absl_detection_once = PTHREAD_ONCE_INIT;

static void absl_detection_off(void) {
    const char *keep = getenv("ETCD_SHIM_ABSL_DEADLOCK_DETECTION");
    if (keep != NULL && strcmp(keep, "keep") == 0) {
        return;
    }
    // absl::OnDeadlockCycle::kIgnore == 0.
    void (*set_mode)(int) =
        (void (*)(int))dlsym(RTLD_DEFAULT, "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE");
    if (set_mode != NULL) {
        set_mode(0);
    }
}

#define SHIM_MAX_METHODS 64
#define SHIM_DETAILS_STACK 256

enum { TAG_UNARY = 0, TAG_STATUS = 1, TAG_RECV = 2, TAG_SEND = 3 };

typedef struct shim_tag {
    etcd_shim_call *call;
    int kind;
} shim_tag;

typedef struct send_node {
    struct send_node *next;
    grpc_byte_buffer *bb;
} send_node;

typedef struct shim_method {
    char *path;
    void *handle;
} shim_method;

struct etcd_shim_client {
    grpc_channel *channel;
    grpc_completion_queue *cq;
    pthread_t poller;

    pthread_mutex_t mu;  // guards everything below
    pthread_cond_t idle; // signalled when live_count drops to 0 while shutting down
    int shutting_down;
    size_t live_count;
    etcd_shim_call *live_head; // doubly linked list of calls with batches in flight

    // Registered methods: append-only; entries are published by a release store of method_count so
    // lookups need no lock.
    shim_method methods[SHIM_MAX_METHODS];
    atomic_size_t method_count;
};

struct etcd_shim_call {
    atomic_int refs; // caller handle + "live" (while gcall != NULL)
    pthread_mutex_t mu;
    etcd_shim_client *client; // valid while live
    etcd_shim_call *prev, *next; // client's live list (client->mu)

    grpc_call *gcall; // NULL once every batch completed
    int inflight;     // batches in flight (mu)
    int is_stream;
    void *ctx;
    etcd_shim_unary_cb unary_cb;
    etcd_shim_stream_message_cb on_message;
    etcd_shim_stream_closed_cb on_closed;

    // Outgoing initial metadata (optional "token").
    grpc_metadata md;
    size_t md_count;

    // Receive side.
    grpc_metadata_array initial_md;
    grpc_byte_buffer *recv_bb;
    int recv_outstanding; // a receive batch is in flight (mu)

    // Status.
    grpc_metadata_array trailing_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    int status_done;  // (mu)
    int closed_fired; // touched by the poller only

    // Send side (streams; unary uses send_bb only).
    grpc_byte_buffer *send_bb; // in flight
    send_node *q_head, *q_tail;
    int send_busy;       // a send batch is in flight
    int send_dead;       // a send failed or the stream ended: no more sends
    int close_requested; // close_send was called
    int close_started;   // SEND_CLOSE_FROM_CLIENT was started

    shim_tag tag_main, tag_recv, tag_send;
};

static const uint8_t empty_bytes[1] = {0};

static void unary_done(etcd_shim_call *call, int ok);
static void status_done(etcd_shim_call *call, int ok);
static void recv_done(etcd_shim_call *call, int ok);
static void send_done(etcd_shim_call *call, int ok);

// ---------------------------------------------------------------------------------------------------
// Helpers

static void set_err(char *err, size_t err_len, const char *msg) {
    if (err != NULL && err_len > 0) {
        snprintf(err, err_len, "%s", msg);
    }
}

static gpr_timespec deadline_from_ms(int64_t timeout_ms) {
    if (timeout_ms <= 0) {
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    }
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

/// Makes `details` a NUL-terminated string: into `stack` when it fits, else into *heap (free it).
static const char *details_cstr(grpc_slice details, char *stack, size_t stack_len, char **heap) {
    size_t n = GRPC_SLICE_LENGTH(details);
    *heap = NULL;
    if (n == 0) {
        return "";
    }
    char *dst = stack;
    if (n + 1 > stack_len) {
        dst = malloc(n + 1);
        if (dst == NULL) {
            return "";
        }
        *heap = dst;
    }
    memcpy(dst, GRPC_SLICE_START_PTR(details), n);
    dst[n] = '\0';
    return dst;
}

/// Contiguous view of a received message. *owned is set when a copy had to be made (unref it).
static void bb_view(grpc_byte_buffer *bb, const uint8_t **bytes, size_t *len, grpc_slice *owned, int *has_owned) {
    *has_owned = 0;
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE) {
        grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
        if (sb->count == 0) {
            *bytes = empty_bytes;
            *len = 0;
            return;
        }
        if (sb->count == 1) {
            *bytes = GRPC_SLICE_START_PTR(sb->slices[0]);
            *len = GRPC_SLICE_LENGTH(sb->slices[0]);
            return;
        }
    }
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb)) {
        *bytes = empty_bytes;
        *len = 0;
        return;
    }
    *owned = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    *has_owned = 1;
    *len = GRPC_SLICE_LENGTH(*owned);
    *bytes = *len > 0 ? GRPC_SLICE_START_PTR(*owned) : empty_bytes;
}

static grpc_byte_buffer *bb_from_bytes(const uint8_t *bytes, size_t len) {
    grpc_slice s = (len > 0 && bytes != NULL) ? grpc_slice_from_copied_buffer((const char *)bytes, len)
                                              : grpc_empty_slice();
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static void call_unref(etcd_shim_call *call) {
    if (atomic_fetch_sub_explicit(&call->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&call->mu);
        free(call);
    }
}

static void free_send_queue(etcd_shim_call *call) {
    send_node *n = call->q_head;
    call->q_head = call->q_tail = NULL;
    while (n != NULL) {
        send_node *next = n->next;
        grpc_byte_buffer_destroy(n->bb);
        free(n);
        n = next;
    }
}

/// Releases every gRPC resource of a call whose batches have all completed (poller thread or failed
/// start; `mu` not held), unlinks it from the client and drops the live reference.
static void call_end(etcd_shim_call *call, grpc_call *gcall) {
    if (gcall != NULL) {
        grpc_call_unref(gcall);
    }
    grpc_metadata_array_destroy(&call->initial_md);
    grpc_metadata_array_destroy(&call->trailing_md);
    grpc_slice_unref(call->details);
    call->details = grpc_empty_slice();
    if (call->error_string != NULL) {
        gpr_free((void *)call->error_string);
        call->error_string = NULL;
    }
    if (call->md_count > 0) {
        grpc_slice_unref(call->md.value);
        call->md_count = 0;
    }
    if (call->recv_bb != NULL) {
        grpc_byte_buffer_destroy(call->recv_bb);
        call->recv_bb = NULL;
    }
    if (call->send_bb != NULL) {
        grpc_byte_buffer_destroy(call->send_bb);
        call->send_bb = NULL;
    }
    free_send_queue(call);

    etcd_shim_client *client = call->client;
    pthread_mutex_lock(&client->mu);
    if (call->prev != NULL) {
        call->prev->next = call->next;
    } else {
        client->live_head = call->next;
    }
    if (call->next != NULL) {
        call->next->prev = call->prev;
    }
    call->prev = call->next = NULL;
    client->live_count--;
    if (client->live_count == 0 && client->shutting_down) {
        pthread_cond_broadcast(&client->idle);
    }
    pthread_mutex_unlock(&client->mu);
    call_unref(call); // the live reference
}

/// Called at the end of every completion handler (mu not held).
static void batch_done(etcd_shim_call *call) {
    pthread_mutex_lock(&call->mu);
    grpc_call *ended = NULL;
    if (--call->inflight == 0) {
        ended = call->gcall;
        call->gcall = NULL;
        call->send_dead = 1;
    }
    pthread_mutex_unlock(&call->mu);
    if (ended != NULL) {
        call_end(call, ended);
    }
}

// ---------------------------------------------------------------------------------------------------
// Client

static void *poller_main(void *arg) {
    etcd_shim_client *client = arg;
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "etcd-shim-cq");
#endif
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(client->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type != GRPC_OP_COMPLETE || ev.tag == NULL) {
            continue;
        }
        shim_tag *tag = ev.tag;
        etcd_shim_call *call = tag->call;
        switch (tag->kind) {
        case TAG_UNARY:
            unary_done(call, ev.success);
            break;
        case TAG_STATUS:
            status_done(call, ev.success);
            break;
        case TAG_RECV:
            recv_done(call, ev.success);
            break;
        case TAG_SEND:
            send_done(call, ev.success);
            break;
        default:
            break;
        }
    }
    return NULL;
}

etcd_shim_client *etcd_shim_client_create(const etcd_shim_options *options, char *err, size_t err_len) {
    if (options == NULL || options->target == NULL || options->target[0] == '\0') {
        set_err(err, err_len, "etcd_shim_client_create: no target");
        return NULL;
    }
    if ((options->cert_chain_pem == NULL) != (options->private_key_pem == NULL)) {
        set_err(err, err_len, "etcd_shim_client_create: client certificate and private key must be given together");
        return NULL;
    }
    if (!options->use_tls && (options->root_pem != NULL || options->cert_chain_pem != NULL)) {
        set_err(err, err_len, "etcd_shim_client_create: TLS material given but use_tls is 0");
        return NULL;
    }

    etcd_shim_client *client = calloc(1, sizeof(*client));
    if (client == NULL) {
        set_err(err, err_len, "etcd_shim_client_create: out of memory");
        return NULL;
    }
    pthread_mutex_init(&client->mu, NULL);
    pthread_cond_init(&client->idle, NULL);
    atomic_init(&client->method_count, 0);

    pthread_once(&absl_detection_once, absl_detection_off);
    grpc_init();

    grpc_channel_credentials *creds;
    if (options->use_tls) {
        grpc_ssl_pem_key_cert_pair pair = {options->private_key_pem, options->cert_chain_pem};
        creds = grpc_ssl_credentials_create(options->root_pem, options->cert_chain_pem != NULL ? &pair : NULL, NULL,
                                            NULL);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    if (creds == NULL) {
        set_err(err, err_len, "etcd_shim_client_create: could not create channel credentials");
        goto fail;
    }

    grpc_arg args[16];
    size_t n = 0;
#define ARG_INT(k, v)                                                                                              \
    do {                                                                                                           \
        args[n].type = GRPC_ARG_INTEGER;                                                                           \
        args[n].key = (char *)(k);                                                                                 \
        args[n].value.integer = (v);                                                                               \
        n++;                                                                                                       \
    } while (0)
    if (options->keepalive_time_ms > 0) {
        // etcd's minimum ping interval is 5 s; pinging at exactly 5 s collects "ping strikes" from timer and
        // delivery jitter and etcd closes the connection (GOAWAY too_many_pings, open streams fail with
        // UNAVAILABLE) after about 30 s. Keep a 1 s margin.
        ARG_INT(GRPC_ARG_KEEPALIVE_TIME_MS, options->keepalive_time_ms < 6000 ? 6000 : options->keepalive_time_ms);
        // Pings only while calls are active: etcd (grpc-go, PermitWithoutStream=false) answers pings on an
        // idle connection with GOAWAY "too_many_pings" after ~3 of them (seen with 3.4 after ~15 s).
        ARG_INT(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    }
    if (options->keepalive_timeout_ms > 0) {
        ARG_INT(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options->keepalive_timeout_ms);
    }
    ARG_INT(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    if (options->max_receive_bytes != 0) {
        ARG_INT(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, options->max_receive_bytes);
    }
    // No transparent retries: the retry filter buffers (copies) every call's send ops for a retry we never want —
    // the elector and EtcdClient callers retry themselves, and a call that failed before reaching etcd surfaces
    // as UNAVAILABLE at once. Measured on Range: ~5 µs less client CPU and ~5-10 µs lower p50 (docs/performance.md).
    // GRPC_ARG_MINIMAL_STACK was measured as well but is not used: it also turns off the client channel's deadline
    // enforcement and the receive-size limit, which the elector relies on.
    ARG_INT(GRPC_ARG_ENABLE_RETRIES, 0);
    // Each client gets its own connection. gRPC's global subchannel pool would otherwise hand a new channel to the
    // same target the connection another channel already has — including a dead one the new channel was created
    // to get away from (EtcdClient replaces its channel after a timeout).
    ARG_INT(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    ARG_INT(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    ARG_INT(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    if (options->use_tls && options->server_name_override != NULL && options->server_name_override[0] != '\0') {
        args[n].type = GRPC_ARG_STRING;
        args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[n].value.string = (char *)options->server_name_override;
        n++;
    }
#undef ARG_INT
    grpc_channel_args channel_args = {n, args};
    client->channel = grpc_channel_create(options->target, creds, &channel_args);
    grpc_channel_credentials_release(creds);
    if (client->channel == NULL) {
        set_err(err, err_len, "etcd_shim_client_create: could not create channel");
        goto fail;
    }

    client->cq = grpc_completion_queue_create_for_next(NULL);
    if (client->cq == NULL) {
        set_err(err, err_len, "etcd_shim_client_create: could not create completion queue");
        goto fail_channel;
    }
    if (pthread_create(&client->poller, NULL, poller_main, client) != 0) {
        set_err(err, err_len, "etcd_shim_client_create: could not start the poller thread");
        grpc_completion_queue_shutdown(client->cq);
        grpc_completion_queue_destroy(client->cq);
        goto fail_channel;
    }
    return client;

fail_channel:
    grpc_channel_destroy(client->channel);
fail:
    grpc_shutdown();
    pthread_cond_destroy(&client->idle);
    pthread_mutex_destroy(&client->mu);
    free(client);
    return NULL;
}

void etcd_shim_client_destroy(etcd_shim_client *client) {
    if (client == NULL) {
        return;
    }
    if (pthread_equal(pthread_self(), client->poller)) {
        fprintf(stderr, "etcd_shim_client_destroy: called from a callback (the client's poller thread); "
                        "this would deadlock\n");
        abort();
    }
    pthread_mutex_lock(&client->mu);
    client->shutting_down = 1;
    for (etcd_shim_call *c = client->live_head; c != NULL; c = c->next) {
        pthread_mutex_lock(&c->mu);
        if (c->gcall != NULL) {
            grpc_call_cancel(c->gcall, NULL);
        }
        pthread_mutex_unlock(&c->mu);
    }
    while (client->live_count > 0) {
        pthread_cond_wait(&client->idle, &client->mu);
    }
    pthread_mutex_unlock(&client->mu);

    grpc_completion_queue_shutdown(client->cq);
    pthread_join(client->poller, NULL);
    grpc_completion_queue_destroy(client->cq);
    grpc_channel_destroy(client->channel);
    size_t count = atomic_load_explicit(&client->method_count, memory_order_acquire);
    for (size_t i = 0; i < count; i++) {
        free(client->methods[i].path);
    }
    grpc_shutdown();
    pthread_cond_destroy(&client->idle);
    pthread_mutex_destroy(&client->mu);
    free(client);
}

const char *etcd_shim_grpc_version(void) { return grpc_version_string(); }

// ---------------------------------------------------------------------------------------------------
// Call creation

/// Registered-call handle for `method`, registering it on first use. NULL if the table is full.
/// Lock-free lookup; registration under client->mu.
static void *method_handle(etcd_shim_client *client, const char *method) {
    size_t count = atomic_load_explicit(&client->method_count, memory_order_acquire);
    for (size_t i = 0; i < count; i++) {
        if (strcmp(client->methods[i].path, method) == 0) {
            return client->methods[i].handle;
        }
    }
    void *handle = NULL;
    pthread_mutex_lock(&client->mu);
    count = atomic_load_explicit(&client->method_count, memory_order_relaxed);
    for (size_t i = 0; i < count; i++) {
        if (strcmp(client->methods[i].path, method) == 0) {
            handle = client->methods[i].handle;
            break;
        }
    }
    if (handle == NULL && count < SHIM_MAX_METHODS) {
        size_t len = strlen(method);
        char *path = malloc(len + 1);
        if (path != NULL) {
            memcpy(path, method, len + 1);
            handle = grpc_channel_register_call(client->channel, path, NULL, NULL);
            client->methods[count].path = path;
            client->methods[count].handle = handle;
            atomic_store_explicit(&client->method_count, count + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&client->mu);
    return handle;
}

/// Allocates a call and creates its grpc_call, linked into the client as live. On failure returns NULL
/// with *code / *msg describing why (nothing to clean up).
static etcd_shim_call *call_new(etcd_shim_client *client, const char *method, const char *token, int64_t timeout_ms,
                                int *code, const char **msg) {
    if (client == NULL || method == NULL || method[0] == '\0') {
        *code = GRPC_STATUS_INVALID_ARGUMENT;
        *msg = client == NULL ? "etcd shim: no client" : "etcd shim: no method";
        return NULL;
    }
    etcd_shim_call *call = malloc(sizeof(*call));
    if (call == NULL) {
        *code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        *msg = "etcd shim: out of memory";
        return NULL;
    }
    memset(call, 0, sizeof(*call));
    atomic_init(&call->refs, 2); // caller + live
    pthread_mutex_init(&call->mu, NULL);
    call->client = client;
    call->status = GRPC_STATUS_UNKNOWN;
    call->details = grpc_empty_slice();
    call->tag_main.call = call;
    call->tag_recv.call = call;
    call->tag_recv.kind = TAG_RECV;
    call->tag_send.call = call;
    call->tag_send.kind = TAG_SEND;
    if (token != NULL && token[0] != '\0') {
        call->md.key = grpc_slice_from_static_string("token");
        call->md.value = grpc_slice_from_copied_string(token);
        call->md_count = 1;
    }

    void *handle = method_handle(client, method);
    gpr_timespec deadline = deadline_from_ms(timeout_ms);

    pthread_mutex_lock(&client->mu);
    if (client->shutting_down) {
        pthread_mutex_unlock(&client->mu);
        *code = GRPC_STATUS_CANCELLED;
        *msg = "etcd shim: client is shutting down";
        goto fail;
    }
    if (handle != NULL) {
        call->gcall = grpc_channel_create_registered_call(client->channel, NULL, GRPC_PROPAGATE_DEFAULTS, client->cq,
                                                          handle, deadline, NULL);
    } else {
        grpc_slice m = grpc_slice_from_copied_string(method);
        call->gcall =
            grpc_channel_create_call(client->channel, NULL, GRPC_PROPAGATE_DEFAULTS, client->cq, m, NULL, deadline, NULL);
        grpc_slice_unref(m);
    }
    if (call->gcall == NULL) {
        pthread_mutex_unlock(&client->mu);
        *code = GRPC_STATUS_INTERNAL;
        *msg = "etcd shim: could not create the call";
        goto fail;
    }
    call->next = client->live_head;
    if (client->live_head != NULL) {
        client->live_head->prev = call;
    }
    client->live_head = call;
    client->live_count++;
    pthread_mutex_unlock(&client->mu);
    return call;

fail:
    if (call->md_count > 0) {
        grpc_slice_unref(call->md.value);
    }
    pthread_mutex_destroy(&call->mu);
    free(call);
    return NULL;
}

/// Undoes call_new when no batch could be started (mu not held). The caller reference is dropped too.
static void call_abort(etcd_shim_call *call) {
    pthread_mutex_lock(&call->mu);
    grpc_call *g = call->gcall;
    call->gcall = NULL;
    call->send_dead = 1;
    pthread_mutex_unlock(&call->mu);
    call_end(call, g);
    call_unref(call);
}

// ---------------------------------------------------------------------------------------------------
// Unary

etcd_shim_call *etcd_shim_unary(etcd_shim_client *client, const char *method, const uint8_t *request,
                                size_t request_len, const char *token, int64_t timeout_ms, etcd_shim_unary_cb cb,
                                void *ctx) {
    int code = 0;
    const char *msg = NULL;
    etcd_shim_call *call = call_new(client, method, token, timeout_ms, &code, &msg);
    if (call == NULL) {
        if (cb != NULL) {
            cb(ctx, code, msg, NULL, 0);
        }
        return NULL;
    }
    call->unary_cb = cb;
    call->ctx = ctx;
    call->tag_main.kind = TAG_UNARY;
    call->send_bb = bb_from_bytes(request, request_len);

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = call->md_count;
    ops[0].data.send_initial_metadata.metadata = call->md_count > 0 ? &call->md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = call->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &call->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &call->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &call->trailing_md;
    ops[5].data.recv_status_on_client.status = &call->status;
    ops[5].data.recv_status_on_client.status_details = &call->details;
    ops[5].data.recv_status_on_client.error_string = &call->error_string;

    pthread_mutex_lock(&call->mu);
    call->inflight = 1;
    grpc_call_error e = grpc_call_start_batch(call->gcall, ops, 6, &call->tag_main, NULL);
    if (e != GRPC_CALL_OK) {
        call->inflight = 0;
    }
    pthread_mutex_unlock(&call->mu);
    if (e != GRPC_CALL_OK) {
        call_abort(call);
        if (cb != NULL) {
            cb(ctx, GRPC_STATUS_INTERNAL, "etcd shim: grpc_call_start_batch failed", NULL, 0);
        }
        return NULL;
    }
    return call;
}

static void unary_done(etcd_shim_call *call, int ok) {
    int status = (int)call->status;
    if (!ok && status == GRPC_STATUS_OK) {
        status = GRPC_STATUS_UNKNOWN;
    }
    const uint8_t *bytes = NULL;
    size_t len = 0;
    grpc_slice owned;
    int has_owned = 0;
    char stack[SHIM_DETAILS_STACK];
    char *heap = NULL;
    const char *message;
    if (status == GRPC_STATUS_OK) {
        if (call->recv_bb != NULL) {
            bb_view(call->recv_bb, &bytes, &len, &owned, &has_owned);
            message = details_cstr(call->details, stack, sizeof(stack), &heap);
        } else {
            status = GRPC_STATUS_INTERNAL;
            message = "etcd shim: server returned OK without a response message";
        }
    } else {
        message = details_cstr(call->details, stack, sizeof(stack), &heap);
    }
    if (call->unary_cb != NULL) {
        call->unary_cb(call->ctx, status, message, bytes, len);
    }
    if (has_owned) {
        grpc_slice_unref(owned);
    }
    free(heap);
    batch_done(call);
}

// ---------------------------------------------------------------------------------------------------
// Streams

etcd_shim_call *etcd_shim_stream_open(etcd_shim_client *client, const char *method, const char *token,
                                      etcd_shim_stream_message_cb on_message, etcd_shim_stream_closed_cb on_closed,
                                      void *ctx) {
    int code = 0;
    const char *msg = NULL;
    etcd_shim_call *call = call_new(client, method, token, 0, &code, &msg);
    if (call == NULL) {
        if (on_closed != NULL) {
            on_closed(ctx, code, msg);
        }
        return NULL;
    }
    call->is_stream = 1;
    call->on_message = on_message;
    call->on_closed = on_closed;
    call->ctx = ctx;
    call->tag_main.kind = TAG_STATUS;

    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = call->md_count;
    ops[0].data.send_initial_metadata.metadata = call->md_count > 0 ? &call->md : NULL;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &call->initial_md;
    ops[2].op = GRPC_OP_RECV_MESSAGE;
    ops[2].data.recv_message.recv_message = &call->recv_bb;

    pthread_mutex_lock(&call->mu);
    grpc_call_error e = grpc_call_start_batch(call->gcall, ops, 3, &call->tag_recv, NULL);
    if (e != GRPC_CALL_OK) {
        pthread_mutex_unlock(&call->mu);
        call_abort(call);
        if (on_closed != NULL) {
            on_closed(ctx, GRPC_STATUS_INTERNAL, "etcd shim: grpc_call_start_batch failed");
        }
        return NULL;
    }
    call->inflight = 1;
    call->recv_outstanding = 1;

    grpc_op st;
    memset(&st, 0, sizeof(st));
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &call->trailing_md;
    st.data.recv_status_on_client.status = &call->status;
    st.data.recv_status_on_client.status_details = &call->details;
    st.data.recv_status_on_client.error_string = &call->error_string;
    e = grpc_call_start_batch(call->gcall, &st, 1, &call->tag_main, NULL);
    if (e == GRPC_CALL_OK) {
        call->inflight++;
    } else {
        // Should not happen. End the stream: the receive completes (cancelled) and reports this status.
        call->status_done = 1;
        call->status = GRPC_STATUS_INTERNAL;
        call->details = grpc_slice_from_static_string("etcd shim: could not start the status batch");
        call->send_dead = 1;
        grpc_call_cancel(call->gcall, NULL);
    }
    pthread_mutex_unlock(&call->mu);
    return call;
}

/// Starts the next send batch if the slot is free (mu held). Returns 1 if a batch was started.
static int send_pump_locked(etcd_shim_call *call) {
    if (call->send_busy || call->send_dead || call->gcall == NULL) {
        return 0;
    }
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (call->q_head != NULL) {
        send_node *node = call->q_head;
        call->q_head = node->next;
        if (call->q_head == NULL) {
            call->q_tail = NULL;
        }
        call->send_bb = node->bb;
        free(node);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = call->send_bb;
        n++;
        if (call->q_head == NULL && call->close_requested && !call->close_started) {
            ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
            call->close_started = 1;
        }
    } else if (call->close_requested && !call->close_started) {
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        call->close_started = 1;
    } else {
        return 0;
    }
    if (grpc_call_start_batch(call->gcall, ops, n, &call->tag_send, NULL) != GRPC_CALL_OK) {
        if (call->send_bb != NULL) {
            grpc_byte_buffer_destroy(call->send_bb);
            call->send_bb = NULL;
        }
        call->send_dead = 1;
        free_send_queue(call);
        return 0;
    }
    call->send_busy = 1;
    call->inflight++;
    return 1;
}

int etcd_shim_stream_send(etcd_shim_call *call, const uint8_t *bytes, size_t len) {
    if (call == NULL || !call->is_stream) {
        return -1;
    }
    pthread_mutex_lock(&call->mu);
    if (call->gcall == NULL || call->send_dead || call->close_requested || call->status_done) {
        pthread_mutex_unlock(&call->mu);
        return -1;
    }
    grpc_byte_buffer *bb = bb_from_bytes(bytes, len);
    if (!call->send_busy) {
        call->send_bb = bb;
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = bb;
        if (grpc_call_start_batch(call->gcall, &op, 1, &call->tag_send, NULL) != GRPC_CALL_OK) {
            call->send_bb = NULL;
            call->send_dead = 1;
            pthread_mutex_unlock(&call->mu);
            grpc_byte_buffer_destroy(bb);
            return -1;
        }
        call->send_busy = 1;
        call->inflight++;
    } else {
        send_node *node = malloc(sizeof(*node));
        if (node == NULL) {
            pthread_mutex_unlock(&call->mu);
            grpc_byte_buffer_destroy(bb);
            return -1;
        }
        node->next = NULL;
        node->bb = bb;
        if (call->q_tail != NULL) {
            call->q_tail->next = node;
        } else {
            call->q_head = node;
        }
        call->q_tail = node;
    }
    pthread_mutex_unlock(&call->mu);
    return 0;
}

void etcd_shim_stream_close_send(etcd_shim_call *call) {
    if (call == NULL || !call->is_stream) {
        return;
    }
    pthread_mutex_lock(&call->mu);
    if (call->gcall != NULL && !call->close_requested && !call->send_dead) {
        call->close_requested = 1;
        send_pump_locked(call);
    }
    pthread_mutex_unlock(&call->mu);
}

static void send_done(etcd_shim_call *call, int ok) {
    pthread_mutex_lock(&call->mu);
    if (call->send_bb != NULL) {
        grpc_byte_buffer_destroy(call->send_bb);
        call->send_bb = NULL;
    }
    call->send_busy = 0;
    if (!ok) {
        call->send_dead = 1;
        free_send_queue(call);
    } else {
        send_pump_locked(call);
    }
    pthread_mutex_unlock(&call->mu);
    batch_done(call);
}

/// Fires the closed callback if the stream is over (poller thread, mu not held).
static void maybe_fire_closed(etcd_shim_call *call) {
    pthread_mutex_lock(&call->mu);
    int fire = !call->closed_fired && call->status_done && !call->recv_outstanding;
    if (fire) {
        call->closed_fired = 1;
    }
    pthread_mutex_unlock(&call->mu);
    if (!fire) {
        return;
    }
    if (call->on_closed != NULL) {
        char stack[SHIM_DETAILS_STACK];
        char *heap = NULL;
        const char *message = details_cstr(call->details, stack, sizeof(stack), &heap);
        call->on_closed(call->ctx, (int)call->status, message);
        free(heap);
    }
}

static void status_done(etcd_shim_call *call, int ok) {
    pthread_mutex_lock(&call->mu);
    if (!ok && call->status == GRPC_STATUS_OK) {
        call->status = GRPC_STATUS_UNKNOWN;
    }
    call->status_done = 1;
    call->send_dead = 1; // the stream is over: refuse further sends, drop what is queued
    free_send_queue(call);
    pthread_mutex_unlock(&call->mu);
    maybe_fire_closed(call);
    batch_done(call);
}

static void recv_done(etcd_shim_call *call, int ok) {
    pthread_mutex_lock(&call->mu);
    grpc_byte_buffer *bb = call->recv_bb;
    call->recv_bb = NULL;
    call->recv_outstanding = 0;
    pthread_mutex_unlock(&call->mu);

    if (ok && bb != NULL) {
        if (call->on_message != NULL) {
            const uint8_t *bytes;
            size_t len;
            grpc_slice owned;
            int has_owned;
            bb_view(bb, &bytes, &len, &owned, &has_owned);
            call->on_message(call->ctx, bytes, len);
            if (has_owned) {
                grpc_slice_unref(owned);
            }
        }
        grpc_byte_buffer_destroy(bb);
        // Re-arm. `inflight` still counts this batch, so gcall is alive.
        pthread_mutex_lock(&call->mu);
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &call->recv_bb;
        if (grpc_call_start_batch(call->gcall, &op, 1, &call->tag_recv, NULL) == GRPC_CALL_OK) {
            call->recv_outstanding = 1;
            call->inflight++;
        } else {
            grpc_call_cancel(call->gcall, NULL);
        }
        pthread_mutex_unlock(&call->mu);
    } else if (bb != NULL) {
        grpc_byte_buffer_destroy(bb);
    }
    maybe_fire_closed(call);
    batch_done(call);
}

// ---------------------------------------------------------------------------------------------------
// Handles

void etcd_shim_call_cancel(etcd_shim_call *call) {
    if (call == NULL) {
        return;
    }
    pthread_mutex_lock(&call->mu);
    if (call->gcall != NULL) {
        grpc_call_cancel(call->gcall, NULL);
    }
    pthread_mutex_unlock(&call->mu);
}

void etcd_shim_call_release(etcd_shim_call *call) {
    if (call == NULL) {
        return;
    }
    call_unref(call);
}
