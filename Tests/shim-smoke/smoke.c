// Smoke test of CEtcdShim against a real etcd, meant to run under valgrind (scripts/valgrind-shim).
//
//   smoke HOST:PORT ETCD_PID DEAD_PORT
//
// HOST:PORT is a running etcd; ETCD_PID is its pid (SIGSTOP/SIGCONT for the deadline and cancel cases);
// DEAD_PORT is a loopback port nobody listens on. Exits 0 when every check passed.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "etcd_shim.h"

#include <dirent.h>
#include <errno.h>
#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures = 0;
static const char *endpoint;
static pid_t etcd_pid;
static int dead_port;

#define CHECK(cond, ...)                                                                                           \
    do {                                                                                                           \
        if (!(cond)) {                                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                       \
            fprintf(stderr, __VA_ARGS__);                                                                          \
            fprintf(stderr, "\n");                                                                                 \
            failures++;                                                                                            \
        }                                                                                                          \
    } while (0)

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/// SIGSTOP is asynchronous: kill() returns before every thread of etcd has stopped (a request can still be
/// answered in that window). Wait until all its threads report state 'T' (at most ~2 s).
static void stop_etcd(void) {
    kill(etcd_pid, SIGSTOP);
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)etcd_pid);
    for (int attempt = 0; attempt < 2000; attempt++) {
        DIR *d = opendir(dir);
        if (d == NULL) {
            return;
        }
        int running = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') {
                continue;
            }
            char path[400], buf[512];
            snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
            FILE *f = fopen(path, "r");
            if (f == NULL) {
                continue;
            }
            size_t n = fread(buf, 1, sizeof(buf) - 1, f);
            fclose(f);
            buf[n] = '\0';
            const char *close_paren = strrchr(buf, ')');
            if (close_paren != NULL && close_paren[1] == ' ' && close_paren[2] != 'T' && close_paren[2] != 't') {
                running = 1;
            }
        }
        closedir(d);
        if (!running) {
            return;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

// ------------------------------------------------------------------------------------------------
// Waiting for callbacks

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
    char message[512];
    uint8_t *bytes;
    size_t len;
} waiter;

static void waiter_init(waiter *w) {
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->status = -1;
}

static void waiter_free(waiter *w) {
    free(w->bytes);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

/// Waits until w->done >= n, at most timeout_ms. Returns 1 on success.
static int waiter_wait(waiter *w, int n, int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (w->done < n && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &until);
    }
    int ok = w->done >= n;
    pthread_mutex_unlock(&w->mu);
    return ok;
}

static void unary_cb(void *ctx, int status, const char *message, const uint8_t *bytes, size_t len) {
    waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->status = status;
    snprintf(w->message, sizeof(w->message), "%s", message);
    if (bytes != NULL) {
        w->bytes = malloc(len + 1);
        memcpy(w->bytes, bytes, len);
        w->len = len;
    }
    w->done++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/// Synchronous unary call. Returns the status; *resp/*resp_len receive a malloc'd copy on OK.
static int unary(etcd_shim_client *c, const char *method, const uint8_t *req, size_t len, int64_t timeout_ms,
                 uint8_t **resp, size_t *resp_len, char *msg, size_t msg_len) {
    waiter w;
    waiter_init(&w);
    etcd_shim_call *call = etcd_shim_unary(c, method, req, len, NULL, timeout_ms, unary_cb, &w);
    if (!waiter_wait(&w, 1, 60000)) {
        fprintf(stderr, "FAIL: unary %s never completed\n", method);
        failures++;
        etcd_shim_call_cancel(call);
        waiter_wait(&w, 1, 60000);
    }
    etcd_shim_call_release(call);
    if (resp != NULL) {
        *resp = w.bytes;
        *resp_len = w.len;
        w.bytes = NULL;
    }
    if (msg != NULL) {
        snprintf(msg, msg_len, "%s", w.message);
    }
    int status = w.status;
    waiter_free(&w);
    return status;
}

typedef struct stream_state {
    waiter w; // done counts messages; closed separately
    int closed;
    int closed_count;
    int closed_status;
    int messages_after_close;
    char closed_message[512];
    // last message
    uint8_t *last;
    size_t last_len;
    // Watch: events seen
    int events;
    int created;
    int64_t last_ttl;
    int is_watch;
} stream_state;

static void stream_msg(void *ctx, const uint8_t *bytes, size_t len) {
    stream_state *s = ctx;
    pthread_mutex_lock(&s->w.mu);
    if (s->closed) {
        s->messages_after_close++;
    }
    if (s->is_watch) {
        Etcdv3__WatchResponse *r = etcdv3__watch_response__unpack(NULL, len, bytes);
        if (r != NULL) {
            if (r->created) {
                s->created++;
            }
            s->events += (int)r->n_events;
            etcdv3__watch_response__free_unpacked(r, NULL);
        }
    } else {
        Etcdv3__LeaseKeepAliveResponse *r = etcdv3__lease_keep_alive_response__unpack(NULL, len, bytes);
        if (r != NULL) {
            s->last_ttl = r->ttl;
            etcdv3__lease_keep_alive_response__free_unpacked(r, NULL);
        }
    }
    s->w.done++;
    pthread_cond_broadcast(&s->w.cv);
    pthread_mutex_unlock(&s->w.mu);
}

static void stream_closed(void *ctx, int status, const char *message) {
    stream_state *s = ctx;
    pthread_mutex_lock(&s->w.mu);
    s->closed = 1;
    s->closed_count++;
    s->closed_status = status;
    snprintf(s->closed_message, sizeof(s->closed_message), "%s", message);
    pthread_cond_broadcast(&s->w.cv);
    pthread_mutex_unlock(&s->w.mu);
}

static int wait_pred(stream_state *s, int (*pred)(stream_state *), int timeout_ms) {
    double until = now_ms() + timeout_ms;
    pthread_mutex_lock(&s->w.mu);
    while (!pred(s)) {
        double left = until - now_ms();
        if (left <= 0) {
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long add_ns = (long)(left < 100 ? left : 100) * 1000000L;
        ts.tv_nsec += add_ns;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->w.cv, &s->w.mu, &ts);
    }
    int ok = pred(s);
    pthread_mutex_unlock(&s->w.mu);
    return ok;
}

static int pred_closed(stream_state *s) { return s->closed; }
static int pred_created(stream_state *s) { return s->created >= 1; }
static int pred_event(stream_state *s) { return s->events >= 1; }
static int pred_two(stream_state *s) { return s->w.done >= 2; }

static void stream_state_init(stream_state *s, int is_watch) {
    memset(s, 0, sizeof(*s));
    waiter_init(&s->w);
    s->is_watch = is_watch;
    s->closed_status = -1;
}

// ------------------------------------------------------------------------------------------------
// Request builders

static int put(etcd_shim_client *c, const char *key, const char *value, int64_t lease) {
    Etcdv3__PutRequest req;
    etcdv3__put_request__init(&req);
    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    req.value.data = (uint8_t *)value;
    req.value.len = strlen(value);
    req.lease = lease;
    uint8_t buf[256];
    size_t n = etcdv3__put_request__pack(&req, buf);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    char msg[256];
    int st = unary(c, "/etcdserverpb.KV/Put", buf, n, 10000, &resp, &resp_len, msg, sizeof(msg));
    CHECK(st == 0, "Put status %d (%s)", st, msg);
    if (st == 0) {
        Etcdv3__PutResponse *r = etcdv3__put_response__unpack(NULL, resp_len, resp);
        CHECK(r != NULL && r->header != NULL && r->header->revision > 0, "Put response");
        if (r != NULL) {
            etcdv3__put_response__free_unpacked(r, NULL);
        }
    }
    free(resp);
    return st;
}

static size_t pack_range(const char *key, uint8_t *buf) {
    Etcdv3__RangeRequest req;
    etcdv3__range_request__init(&req);
    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    return etcdv3__range_request__pack(&req, buf);
}

// ------------------------------------------------------------------------------------------------
// Cases

static etcd_shim_client *make_client(const char *target) {
    etcd_shim_options o;
    memset(&o, 0, sizeof(o));
    o.target = target;
    o.keepalive_time_ms = 10000;
    char err[256] = {0};
    etcd_shim_client *c = etcd_shim_client_create(&o, err, sizeof(err));
    CHECK(c != NULL, "client_create(%s): %s", target, err);
    return c;
}

static void test_unary(etcd_shim_client *c) {
    fprintf(stderr, "-- unary Put/Range/Txn\n");
    put(c, "smoke/a", "hello", 0);

    uint8_t buf[256];
    size_t n = pack_range("smoke/a", buf);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    char msg[256];
    int st = unary(c, "/etcdserverpb.KV/Range", buf, n, 10000, &resp, &resp_len, msg, sizeof(msg));
    CHECK(st == 0, "Range status %d (%s)", st, msg);
    if (st == 0) {
        Etcdv3__RangeResponse *r = etcdv3__range_response__unpack(NULL, resp_len, resp);
        CHECK(r != NULL && r->n_kvs == 1 && r->kvs[0]->value.len == 5 && memcmp(r->kvs[0]->value.data, "hello", 5) == 0,
              "Range response");
        if (r != NULL) {
            etcdv3__range_response__free_unpacked(r, NULL);
        }
    }
    free(resp);

    // Txn: if version(smoke/a) > 0 then put smoke/b else range.
    Etcdv3__Compare cmp;
    etcdv3__compare__init(&cmp);
    cmp.result = ETCDV3__COMPARE__COMPARE_RESULT__GREATER;
    cmp.target = ETCDV3__COMPARE__COMPARE_TARGET__VERSION;
    cmp.key.data = (uint8_t *)"smoke/a";
    cmp.key.len = 7;
    cmp.target_union_case = ETCDV3__COMPARE__TARGET_UNION_VERSION;
    cmp.version = 0;
    Etcdv3__Compare *cmps[1] = {&cmp};
    Etcdv3__PutRequest p;
    etcdv3__put_request__init(&p);
    p.key.data = (uint8_t *)"smoke/b";
    p.key.len = 7;
    p.value.data = (uint8_t *)"x";
    p.value.len = 1;
    Etcdv3__RequestOp op;
    etcdv3__request_op__init(&op);
    op.request_case = ETCDV3__REQUEST_OP__REQUEST_REQUEST_PUT;
    op.request_put = &p;
    Etcdv3__RequestOp *ops[1] = {&op};
    Etcdv3__TxnRequest txn;
    etcdv3__txn_request__init(&txn);
    txn.n_compare = 1;
    txn.compare = cmps;
    txn.n_success = 1;
    txn.success = ops;
    n = etcdv3__txn_request__pack(&txn, buf);
    st = unary(c, "/etcdserverpb.KV/Txn", buf, n, 10000, &resp, &resp_len, msg, sizeof(msg));
    CHECK(st == 0, "Txn status %d (%s)", st, msg);
    if (st == 0) {
        Etcdv3__TxnResponse *r = etcdv3__txn_response__unpack(NULL, resp_len, resp);
        CHECK(r != NULL && r->succeeded && r->n_responses == 1, "Txn response");
        if (r != NULL) {
            etcdv3__txn_response__free_unpacked(r, NULL);
        }
    }
    free(resp);

    // Empty request (a RangeRequest with every field default): etcd answers INVALID_ARGUMENT.
    st = unary(c, "/etcdserverpb.KV/Range", NULL, 0, 10000, NULL, NULL, msg, sizeof(msg));
    CHECK(st == 3, "empty Range status %d (%s)", st, msg);
    // Status with an empty message is OK too (StatusRequest has no fields).
    st = unary(c, "/etcdserverpb.Maintenance/Status", NULL, 0, 10000, &resp, &resp_len, msg, sizeof(msg));
    CHECK(st == 0, "Status status %d (%s)", st, msg);
    free(resp);
    // Unknown method.
    st = unary(c, "/etcdserverpb.KV/Nope", NULL, 0, 10000, NULL, NULL, msg, sizeof(msg));
    CHECK(st == 12, "unknown method status %d (%s)", st, msg);
}

static void send_watch_create(etcd_shim_call *call, const char *key) {
    Etcdv3__WatchCreateRequest cr;
    etcdv3__watch_create_request__init(&cr);
    cr.key.data = (uint8_t *)key;
    cr.key.len = strlen(key);
    Etcdv3__WatchRequest wr;
    etcdv3__watch_request__init(&wr);
    wr.request_union_case = ETCDV3__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    wr.create_request = &cr;
    uint8_t buf[256];
    size_t n = etcdv3__watch_request__pack(&wr, buf);
    CHECK(etcd_shim_stream_send(call, buf, n) == 0, "watch create send");
}

static void test_watch(etcd_shim_client *c) {
    fprintf(stderr, "-- watch stream\n");
    stream_state s;
    stream_state_init(&s, 1);
    etcd_shim_call *call = etcd_shim_stream_open(c, "/etcdserverpb.Watch/Watch", NULL, stream_msg, stream_closed, &s);
    CHECK(call != NULL, "watch open");
    send_watch_create(call, "smoke/w");
    CHECK(wait_pred(&s, pred_created, 30000), "watch created");
    put(c, "smoke/w", "1", 0);
    CHECK(wait_pred(&s, pred_event, 30000), "watch event");
    etcd_shim_call_cancel(call);
    CHECK(wait_pred(&s, pred_closed, 30000), "watch closed after cancel");
    CHECK(s.closed_status == 1, "watch closed status %d (%s)", s.closed_status, s.closed_message);
    CHECK(etcd_shim_stream_send(call, (const uint8_t *)"", 0) == -1, "send after close");
    etcd_shim_call_cancel(call); // again: harmless
    etcd_shim_call_release(call);
    CHECK(s.closed_count == 1 && s.messages_after_close == 0, "closed once, last");
    waiter_free(&s.w);
}

static void test_keepalive(etcd_shim_client *c) {
    fprintf(stderr, "-- lease keepalive stream\n");
    Etcdv3__LeaseGrantRequest g;
    etcdv3__lease_grant_request__init(&g);
    g.ttl = 30;
    uint8_t buf[64];
    size_t n = etcdv3__lease_grant_request__pack(&g, buf);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    char msg[256];
    int st = unary(c, "/etcdserverpb.Lease/LeaseGrant", buf, n, 10000, &resp, &resp_len, msg, sizeof(msg));
    CHECK(st == 0, "LeaseGrant status %d (%s)", st, msg);
    int64_t id = 0;
    if (st == 0) {
        Etcdv3__LeaseGrantResponse *r = etcdv3__lease_grant_response__unpack(NULL, resp_len, resp);
        CHECK(r != NULL && r->id != 0, "LeaseGrant response");
        if (r != NULL) {
            id = r->id;
            etcdv3__lease_grant_response__free_unpacked(r, NULL);
        }
    }
    free(resp);

    stream_state s;
    stream_state_init(&s, 0);
    etcd_shim_call *call =
        etcd_shim_stream_open(c, "/etcdserverpb.Lease/LeaseKeepAlive", "", stream_msg, stream_closed, &s);
    Etcdv3__LeaseKeepAliveRequest ka;
    etcdv3__lease_keep_alive_request__init(&ka);
    ka.id = id;
    n = etcdv3__lease_keep_alive_request__pack(&ka, buf);
    // Two queued back to back (the second waits for the first's completion).
    CHECK(etcd_shim_stream_send(call, buf, n) == 0, "keepalive send 1");
    CHECK(etcd_shim_stream_send(call, buf, n) == 0, "keepalive send 2");
    CHECK(wait_pred(&s, pred_two, 30000), "two keepalive responses (got %d)", s.w.done);
    CHECK(s.last_ttl > 0, "keepalive ttl %lld", (long long)s.last_ttl);
    etcd_shim_stream_close_send(call);
    CHECK(etcd_shim_stream_send(call, buf, n) == -1, "send after close_send");
    CHECK(wait_pred(&s, pred_closed, 30000), "keepalive stream ends after close_send");
    CHECK(s.closed_status == 0, "keepalive closed status %d (%s)", s.closed_status, s.closed_message);
    etcd_shim_call_release(call);
    waiter_free(&s.w);
}

static void test_unreachable(void) {
    fprintf(stderr, "-- unreachable endpoint\n");
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", dead_port);
    etcd_shim_client *c = make_client(target);
    if (c == NULL) {
        return;
    }
    uint8_t buf[64];
    size_t n = pack_range("x", buf);
    char msg[256];
    double t0 = now_ms();
    int st = unary(c, "/etcdserverpb.KV/Range", buf, n, 20000, NULL, NULL, msg, sizeof(msg));
    double dt = now_ms() - t0;
    CHECK(st == 14, "unreachable status %d (%s)", st, msg);
    CHECK(dt < 5000, "unreachable took %.0f ms", dt);
    // A stream fails the same way.
    stream_state s;
    stream_state_init(&s, 1);
    etcd_shim_call *call = etcd_shim_stream_open(c, "/etcdserverpb.Watch/Watch", NULL, stream_msg, stream_closed, &s);
    CHECK(wait_pred(&s, pred_closed, 20000), "stream to unreachable closes");
    CHECK(s.closed_status == 14, "stream unreachable status %d (%s)", s.closed_status, s.closed_message);
    etcd_shim_call_release(call);
    waiter_free(&s.w);
    etcd_shim_client_destroy(c);
}

static void test_failover(void) {
    fprintf(stderr, "-- several endpoints, first dead\n");
    char target[128];
    snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d,%s", dead_port, endpoint);
    etcd_shim_client *c = make_client(target);
    if (c == NULL) {
        return;
    }
    uint8_t buf[64];
    size_t n = pack_range("smoke/a", buf);
    char msg[256];
    int st = unary(c, "/etcdserverpb.KV/Range", buf, n, 20000, NULL, NULL, msg, sizeof(msg));
    CHECK(st == 0, "failover Range status %d (%s)", st, msg);
    etcd_shim_client_destroy(c);
}

static void test_deadline_and_cancel(etcd_shim_client *c) {
    fprintf(stderr, "-- deadline against a stopped etcd, cancel in flight\n");
    uint8_t buf[64];
    size_t n = pack_range("smoke/a", buf);
    char msg[256];
    // Make sure the connection is up first.
    unary(c, "/etcdserverpb.KV/Range", buf, n, 10000, NULL, NULL, msg, sizeof(msg));
    stop_etcd();
    double t0 = now_ms();
    int st = unary(c, "/etcdserverpb.KV/Range", buf, n, 300, NULL, NULL, msg, sizeof(msg));
    double dt = now_ms() - t0;
    CHECK(st == 4, "deadline status %d (%s)", st, msg);
    CHECK(dt >= 250 && dt < 10000, "deadline after %.0f ms", dt);

    // Cancel a unary in flight (no deadline).
    waiter w;
    waiter_init(&w);
    etcd_shim_call *call = etcd_shim_unary(c, "/etcdserverpb.KV/Range", buf, n, NULL, 0, unary_cb, &w);
    CHECK(call != NULL, "unary start");
    CHECK(!waiter_wait(&w, 1, 200), "unary against stopped etcd must not complete");
    etcd_shim_call_cancel(call);
    CHECK(waiter_wait(&w, 1, 10000), "cancelled unary completes");
    CHECK(w.status == 1, "cancel status %d (%s)", w.status, w.message);
    etcd_shim_call_cancel(call);
    etcd_shim_call_release(call);
    waiter_free(&w);

    // Release before completion, then cancel through destroy later: here, just release and let it finish.
    waiter w2;
    waiter_init(&w2);
    call = etcd_shim_unary(c, "/etcdserverpb.KV/Range", buf, n, NULL, 500, unary_cb, &w2);
    etcd_shim_call_release(call);
    kill(etcd_pid, SIGCONT);
    CHECK(waiter_wait(&w2, 1, 20000), "released call still completes");
    waiter_free(&w2);
}

static void test_destroy_in_flight(void) {
    fprintf(stderr, "-- destroy with calls and streams in flight\n");
    etcd_shim_client *c = make_client(endpoint);
    if (c == NULL) {
        return;
    }
    stream_state ws, ks;
    stream_state_init(&ws, 1);
    stream_state_init(&ks, 0);
    etcd_shim_call *watch = etcd_shim_stream_open(c, "/etcdserverpb.Watch/Watch", NULL, stream_msg, stream_closed, &ws);
    send_watch_create(watch, "smoke/d");
    CHECK(wait_pred(&ws, pred_created, 30000), "watch created");
    etcd_shim_call *ka =
        etcd_shim_stream_open(c, "/etcdserverpb.Lease/LeaseKeepAlive", NULL, stream_msg, stream_closed, &ks);
    // Queue some sends that will be dropped.
    uint8_t buf[64];
    for (int i = 0; i < 5; i++) {
        Etcdv3__LeaseKeepAliveRequest r;
        etcdv3__lease_keep_alive_request__init(&r);
        r.id = 12345 + i;
        size_t n = etcdv3__lease_keep_alive_request__pack(&r, buf);
        etcd_shim_stream_send(ka, buf, n);
    }
    stop_etcd();
    waiter w;
    waiter_init(&w);
    size_t n = pack_range("smoke/a", buf);
    etcd_shim_call *u = etcd_shim_unary(c, "/etcdserverpb.KV/Range", buf, n, NULL, 0, unary_cb, &w);
    etcd_shim_client_destroy(c);
    kill(etcd_pid, SIGCONT);
    CHECK(w.done == 1 && w.status == 1, "unary cancelled by destroy: done %d status %d", w.done, w.status);
    CHECK(ws.closed_count == 1 && ws.closed_status == 1, "watch closed by destroy: %d %d", ws.closed_count,
          ws.closed_status);
    CHECK(ks.closed_count == 1, "keepalive closed by destroy: %d (status %d)", ks.closed_count, ks.closed_status);
    // Handles outlive the client.
    etcd_shim_call_cancel(watch);
    CHECK(etcd_shim_stream_send(watch, buf, n) == -1, "send after destroy");
    etcd_shim_stream_close_send(ka);
    etcd_shim_call_release(watch);
    etcd_shim_call_release(ka);
    etcd_shim_call_release(u);
    waiter_free(&w);
    waiter_free(&ws.w);
    waiter_free(&ks.w);
}

static void test_bad_args(void) {
    fprintf(stderr, "-- bad arguments\n");
    char err[128];
    etcd_shim_options o;
    memset(&o, 0, sizeof(o));
    CHECK(etcd_shim_client_create(&o, err, sizeof(err)) == NULL, "no target");
    CHECK(etcd_shim_client_create(NULL, NULL, 0) == NULL, "NULL options");
    waiter w;
    waiter_init(&w);
    CHECK(etcd_shim_unary(NULL, "/x", NULL, 0, NULL, 0, unary_cb, &w) == NULL, "NULL client");
    CHECK(w.done == 1 && w.status != 0, "sync error callback");
    waiter_free(&w);
    etcd_shim_call_release(NULL);
    etcd_shim_call_cancel(NULL);
}

typedef struct {
    etcd_shim_client *c;
    int ok;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    uint8_t buf[64];
    size_t n = pack_range("smoke/a", buf);
    for (int i = 0; i < 50; i++) {
        int st = unary(a->c, "/etcdserverpb.KV/Range", buf, n, 20000, NULL, NULL, NULL, 0);
        if (st == 0) {
            a->ok++;
        }
    }
    return NULL;
}

static void test_concurrent(etcd_shim_client *c) {
    fprintf(stderr, "-- concurrent unary calls from 4 threads\n");
    pthread_t t[4];
    worker_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i].c = c;
        a[i].ok = 0;
        pthread_create(&t[i], NULL, worker, &a[i]);
    }
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ok += a[i].ok;
    }
    CHECK(ok == 200, "concurrent ok %d/200", ok);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s HOST:PORT ETCD_PID DEAD_PORT\n", argv[0]);
        return 2;
    }
    endpoint = argv[1];
    etcd_pid = (pid_t)atoi(argv[2]);
    dead_port = atoi(argv[3]);
    fprintf(stderr, "grpc %s\n", etcd_shim_grpc_version());

    test_bad_args();
    etcd_shim_client *c = make_client(endpoint);
    if (c == NULL) {
        return 1;
    }
    test_unary(c);
    test_watch(c);
    test_keepalive(c);
    test_concurrent(c);
    test_deadline_and_cancel(c);
    etcd_shim_client_destroy(c);
    test_unreachable();
    test_failover();
    test_destroy_in_flight();

    // Wait for gRPC's last shutdown to finish its cleanup before exiting.
    grpc_init();
    grpc_shutdown_blocking();

    if (failures > 0) {
        fprintf(stderr, "smoke: %d check(s) FAILED\n", failures);
        return 1;
    }
    fprintf(stderr, "smoke: all checks passed\n");
    return 0;
}
