"""A candidate using the Python `kubernetes` package's leader election (kubernetes-client/python,
`kubernetes.leaderelection` with its `LeaseLock`), for the interoperability test.

Prints one JSON object per line on stdout, each with `mono` = time.monotonic() (CLOCK_MONOTONIC, the
clock the Swift test uses too):
  {"event": "ready"}
  {"event": "started", "identity": ...}       onstarted_leading
  {"event": "stopped", "identity": ...}       onstopped_leading
  {"event": "observed", "holder": ..., "leaseDurationSeconds": ..., "acquireTime": ..., "renewTime": ...}
                                             whenever the record read through its LeaseLock changes
Usage: elector.py KUBECONFIG NAMESPACE NAME IDENTITY LEASE RENEW RETRY
"""
import json
import sys
import threading
import time

from kubernetes import client, config
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

kubeconfig, namespace, name, identity = sys.argv[1:5]
lease, renew, retry = (int(v) for v in sys.argv[5:8])
lock_out = threading.Lock()


def emit(**fields):
    fields["mono"] = time.monotonic()
    with lock_out:
        print(json.dumps(fields), flush=True)


config.load_kube_config(config_file=kubeconfig)


def observe():
    """Reads the lease through the client's own LeaseLock decoder and reports every change."""
    observer = LeaseLock(name, namespace, identity + "-observer")
    last = None
    while True:
        ok, record = observer.get(name, namespace)
        if ok:
            seen = (record.holder_identity, record.lease_duration, str(record.acquire_time), str(record.renew_time))
            if seen != last:
                last = seen
                emit(event="observed", holder=record.holder_identity, leaseDurationSeconds=record.lease_duration,
                     acquireTime=str(record.acquire_time), renewTime=str(record.renew_time))
        time.sleep(0.2)


threading.Thread(target=observe, daemon=True).start()


def started():
    emit(event="started", identity=identity)
    while True:
        time.sleep(3600)


def stopped():
    emit(event="stopped", identity=identity)


cfg = electionconfig.Config(LeaseLock(name, namespace, identity), lease_duration=lease, renew_deadline=renew,
                            retry_period=retry, onstarted_leading=started, onstopped_leading=stopped)
emit(event="ready")
leaderelection.LeaderElection(cfg).run()
