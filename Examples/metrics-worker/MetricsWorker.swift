import ArgumentParser
import FileLock
import Foundation
import LeaderElection
import LeaderElectionService
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// An example service: kube's `--leader-elect*` flags, work that runs only while leading (guarded by the term's
/// `check()`), graceful shutdown on SIGTERM/SIGINT (work drained before the lease is released), and the elector's
/// metrics (`leader_election_master_status{name}`, …) served for Prometheus at `/metrics`.
///
/// ```
/// swift run metrics-worker-example --leader-elect-lock-url file:///tmp/example/worker --metrics-port 9100
/// curl -s 127.0.0.1:9100/metrics | grep leader_election
/// ```
@main
struct MetricsWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics-worker-example",
        abstract: "Runs a worker only while it holds a file lock; serves Prometheus metrics.")

    @OptionGroup(title: "Leader election") var leaderElection: LeaderElectionOptions

    @Option(help: "This candidate's identity (unique per process).")
    var identity = "\(ProcessInfo.processInfo.hostName)_\(getpid())"

    @Option(help: "Address of the /metrics endpoint.")
    var metricsHost = "127.0.0.1"

    @Option(help: "Port of the /metrics endpoint (0: any free port, printed at start).")
    var metricsPort = 9100

    func run() async throws {
        let logger = Logger(label: "metrics-worker")
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        var configuration = leaderElection.serviceConfiguration
        configuration.onLostLeadership = .recampaign
        let identity = self.identity
        let election = LeaderElectionService(
            configuration: configuration,
            lockFactory: { configuration in try makeFileLock(configuration, identity: identity) },
            logger: logger
        ) { term in
            let jobs = Counter(label: "example_jobs_total")
            while true {
                try term?.check()   // never act on a term whose guarantee ran out
                jobs.increment()
                try await Task.sleep(for: .seconds(1))
            }
        }
        let endpoint = MetricsEndpoint(host: metricsHost, port: metricsPort, registry: registry, logger: logger)
        let group = ServiceGroup(services: [endpoint, election], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

/// The lock for a `file:///directory/name` URL (the example keeps to the single-host backend; `leasectl` shows
/// etcd and Kubernetes locks).
func makeFileLock(_ configuration: LeaderElectionService.Configuration, identity: String) throws -> any ResourceLock {
    guard let url = configuration.lockURL, url.hasPrefix("file://") else {
        throw ValidationError("this example needs --leader-elect-lock-url file:///DIRECTORY/NAME")
    }
    return try FileLock(path: String(url.dropFirst("file://".count)), identity: identity, createDirectory: true)
}

/// `GET /metrics` in Prometheus' text format, on SwiftNIO; runs until graceful shutdown.
struct MetricsEndpoint: Service {
    let host: String
    let port: Int
    let registry: PrometheusCollectorRegistry
    let logger: Logger

    func run() async throws {
        let registry = self.registry
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHandler(registry: registry))
                }
            }
            .bind(host: host, port: port).get()
        print("metrics: http://\(host):\(channel.localAddress?.port ?? port)/metrics")
        fflush(nil)
        logger.info("serving metrics", metadata: ["metrics.address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        try? await gracefulShutdown()
        try await channel.close()
    }
}

private final class MetricsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let registry: PrometheusCollectorRegistry
    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data) else { return }
        let found = request.method == .GET && request.uri.split(separator: "?").first == "/metrics"
        let body = found ? registry.emitToBuffer() : Array("not found\n".utf8)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4" : "text/plain")
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: found ? .ok : .notFound, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }
}
