// go-clientv3: the Go reference of `make bench` (Sources/lease-bench, docs/performance.md).
//
// It times the same calls as lease-bench's etcd latency scenarios with Go's own etcd client
// (go.etcd.io/etcd/clientv3 from Debian's golang-etcd-server-dev, the client of the etcd 3.4 that the benchmark
// runs), against the etcd that lease-bench started, between lease-bench's own rounds, so that both clients are
// compared on the same server at the same moment of a noisy machine. One run = one round; the result is one
// JSON object on stdout.
//
//	go-clientv3 -endpoint 127.0.0.1:2379 -op range -key /k -value '...' -samples 2000 -warmup 300
//
// -op range: Get(key), linearizable (clientv3's default), one key.
// -op txn:   Txn(If(ModRevision(key) == rev)).Then(OpPut(key, value)).Else(OpGet(key)), rev = the previous
//
//	call's header revision (the shape of an EtcdLock renewal).
//
// Every call gets a 5 s deadline (context.WithTimeout), as EtcdClient's calls do by default.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
)

type result struct {
	Op                string  `json:"op"`
	Samples           int     `json:"samples"`
	P50Micros         float64 `json:"p50Micros"`
	P90Micros         float64 `json:"p90Micros"`
	P99Micros         float64 `json:"p99Micros"`
	MaxMicros         float64 `json:"maxMicros"`
	CPUMicrosPerCall  float64 `json:"cpuMicrosPerCall"`
	GoVersion         string  `json:"goVersion"`
	ClientDescription string  `json:"client"`
}

func cpuMicros() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return float64(usage.Utime.Nano()+usage.Stime.Nano()) / 1000
}

func percentile(sorted []float64, p float64) float64 {
	// Nearest rank, as lease-bench's Percentiles: the p-th percentile of n sorted samples is the ⌈p·n⌉-th.
	rank := int(math.Ceil(p*float64(len(sorted)))) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(sorted) {
		rank = len(sorted) - 1
	}
	return sorted[rank]
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-clientv3: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	endpoint := flag.String("endpoint", "", "etcd client endpoint, host:port")
	op := flag.String("op", "range", "range | txn")
	key := flag.String("key", "", "the key (the benchmark uses its own keys for this client)")
	value := flag.String("value", "", "the value written before timing (range) or by every call (txn)")
	samples := flag.Int("samples", 2000, "timed calls")
	warmup := flag.Int("warmup", 300, "untimed calls before timing")
	flag.Parse()
	if *endpoint == "" || *key == "" || *samples < 1 || *warmup < 0 || (*op != "range" && *op != "txn") {
		fail("usage: -endpoint host:port -op range|txn -key K [-value V] [-samples N] [-warmup N]")
	}

	client, err := clientv3.New(clientv3.Config{Endpoints: []string{*endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fail("connect %s: %v", *endpoint, err)
	}
	defer client.Close()

	withDeadline := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 5*time.Second)
	}
	ctx, cancel := withDeadline()
	put, err := client.Put(ctx, *key, *value)
	cancel()
	if err != nil {
		fail("put %s: %v", *key, err)
	}
	revision := put.Header.Revision

	call := func() {
		ctx, cancel := withDeadline()
		defer cancel()
		switch *op {
		case "range":
			response, err := client.Get(ctx, *key)
			if err != nil {
				fail("get: %v", err)
			}
			if len(response.Kvs) != 1 {
				fail("get returned %d keys, expected 1", len(response.Kvs))
			}
		case "txn":
			response, err := client.Txn(ctx).
				If(clientv3.Compare(clientv3.ModRevision(*key), "=", revision)).
				Then(clientv3.OpPut(*key, *value)).
				Else(clientv3.OpGet(*key)).
				Commit()
			if err != nil {
				fail("txn: %v", err)
			}
			if !response.Succeeded {
				fail("CAS Txn at revision %d did not succeed (nothing else writes the key)", revision)
			}
			revision = response.Header.Revision
		}
	}

	for i := 0; i < *warmup; i++ {
		call()
	}
	latencies := make([]float64, *samples)
	cpuBefore := cpuMicros()
	for i := range latencies {
		start := time.Now()
		call()
		latencies[i] = float64(time.Since(start).Nanoseconds()) / 1000
	}
	cpu := cpuMicros() - cpuBefore
	sort.Float64s(latencies)
	out, _ := json.Marshal(result{
		Op: *op, Samples: *samples,
		P50Micros: percentile(latencies, 0.50), P90Micros: percentile(latencies, 0.90),
		P99Micros: percentile(latencies, 0.99), MaxMicros: latencies[len(latencies)-1],
		CPUMicrosPerCall: cpu / float64(*samples), GoVersion: runtime.Version(),
		ClientDescription: "go.etcd.io/etcd/clientv3 (Debian golang-etcd-server-dev)",
	})
	fmt.Println(string(out))
}
