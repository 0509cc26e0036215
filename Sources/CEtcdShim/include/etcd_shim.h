// CEtcdShim — a narrow C API over gRPC core for talking to etcd v3.
//
// One client = one channel + one completion queue + one poller thread. Messages are opaque bytes
// (encoded/decoded by the caller with the protobuf-c types in etcdv3/*.pb-c.h). Every callback runs on
// the client's poller thread; callers must not block in it and must not destroy the client from it.
#ifndef ETCD_SHIM_H
#define ETCD_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "etcdv3/kv.pb-c.h"
#include "etcdv3/rpc.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct etcd_shim_client etcd_shim_client;
typedef struct etcd_shim_call etcd_shim_call;

/// Channel options. Zero-initialise, then set what you need.
typedef struct etcd_shim_options {
    /// gRPC target: "127.0.0.1:2379" or, for several endpoints with failover, "ipv4:127.0.0.1:2379,127.0.0.1:22379".
    const char *target;
    /// 0: insecure (plaintext). 1: TLS.
    int use_tls;
    /// TLS: PEM of the CA to trust (NULL: system roots).
    const char *root_pem;
    /// mTLS: client certificate chain and private key in PEM (both or neither).
    const char *cert_chain_pem;
    const char *private_key_pem;
    /// TLS: override the name checked against the server certificate (NULL: host of the target).
    const char *server_name_override;
    /// HTTP/2 keepalive ping interval in ms while calls are active (0: off; values below 6000 are raised to 6000:
    /// etcd's minimum is 5 s and pinging at exactly 5 s gets the connection closed with GOAWAY too_many_pings).
    int keepalive_time_ms;
    /// How long to wait for a keepalive ack before closing the connection, in ms (0: gRPC default 20 s).
    int keepalive_timeout_ms;
    /// Maximum size of a received message in bytes (0: gRPC default 4 MiB).
    int max_receive_bytes;
} etcd_shim_options;

/// Called once when a unary call ends. status: a gRPC status code (0 = OK). message: the status
/// details (NUL-terminated, never NULL). bytes/len: the response on OK (else NULL/0). All pointers are
/// valid only during the callback.
typedef void (*etcd_shim_unary_cb)(void *ctx, int status, const char *message, const uint8_t *bytes, size_t len);

/// Called for every message received on a stream (pointers valid during the callback).
typedef void (*etcd_shim_stream_message_cb)(void *ctx, const uint8_t *bytes, size_t len);
/// Called exactly once when a stream ends (after its last message callback), with its final status.
typedef void (*etcd_shim_stream_closed_cb)(void *ctx, int status, const char *message);

/// Creates a client. Returns NULL and writes a message into err (if non-NULL) on failure.
etcd_shim_client *etcd_shim_client_create(const etcd_shim_options *options, char *err, size_t err_len);

/// Cancels every call still running, waits until their callbacks have run, shuts the completion queue
/// down, joins the poller thread and frees everything. Must not be called from a callback.
void etcd_shim_client_destroy(etcd_shim_client *client);

/// Starts a unary call to `method` (e.g. "/etcdserverpb.KV/Range") with a serialized request.
/// `token` (may be NULL) is sent as the "token" metadata. `timeout_ms` > 0 sets a deadline.
/// Returns a call handle the caller owns (release it with etcd_shim_call_release), or NULL if the call
/// could not be started — then `cb` is still called exactly once, synchronously, with the error.
etcd_shim_call *etcd_shim_unary(etcd_shim_client *client, const char *method,
                                const uint8_t *request, size_t request_len,
                                const char *token, int64_t timeout_ms,
                                etcd_shim_unary_cb cb, void *ctx);

/// Opens a bidirectional stream (e.g. "/etcdserverpb.Watch/Watch"). Messages are delivered one at a
/// time (the next receive is armed from the previous one's completion). Returns a handle the caller
/// owns, or NULL — then `on_closed` is called once, synchronously, with the error.
etcd_shim_call *etcd_shim_stream_open(etcd_shim_client *client, const char *method, const char *token,
                                      etcd_shim_stream_message_cb on_message,
                                      etcd_shim_stream_closed_cb on_closed, void *ctx);

/// Queues a message on a stream (copied; at most one send is in flight, the rest wait in order).
/// Returns 0, or -1 if the stream has ended or its sending side is closed.
int etcd_shim_stream_send(etcd_shim_call *call, const uint8_t *bytes, size_t len);

/// Half-closes the sending side after the queued messages.
void etcd_shim_stream_close_send(etcd_shim_call *call);

/// Cancels a call or stream (safe from any thread, any number of times, also after it ended).
/// Its callback then reports CANCELLED (1) unless it already completed.
void etcd_shim_call_cancel(etcd_shim_call *call);

/// Drops the caller's reference to a call handle (the call itself continues unless cancelled).
void etcd_shim_call_release(etcd_shim_call *call);

/// gRPC core's version string.
const char *etcd_shim_grpc_version(void);

#ifdef __cplusplus
}
#endif

#endif
