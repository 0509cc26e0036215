// The inotify(7) change feed of FileLock. Together with FileLockStore.swift, the only files with syscalls.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import LeaderElection
import Synchronization

/// One subscription to changes of a lock's record and its candidates' liveness files.
///
/// A dedicated thread blocks in `poll(2)` on an inotify descriptor and an `eventfd` used to stop it.
/// It watches the lock directory (record created, replaced by rename, written in place, deleted) and the
/// members directory (a liveness file closed after being open for writing — which is what the kernel
/// does when the holder's process dies — or deleted by a sweeper).
enum InotifyChangeFeed {
    /// What one batch of inotify events (everything pending when the feed thread woke up) concerned.
    struct Batch: Sendable {
        /// Events on the record's name in the lock directory.
        var record = false
        /// Anything else relevant: the members directory (a liveness file closed or removed), the lock directory
        /// itself being removed or moved, or an overflowed event queue.
        var other = false
        var isEmpty: Bool { !record && !other }
    }

    /// Starts a subscription yielding `Void` per batch, or returns `nil` when inotify is unavailable (for example,
    /// out of instances).
    ///
    /// The watches are in place when this returns, so every later change is reported.
    static func start(paths: LockPaths) -> AsyncStream<Void>? {
        start(paths: paths) { _ in () }
    }

    /// Starts a subscription that reads the record on the feed thread after each batch (``RecordReader/change()``,
    /// without any lock a writer needs) and yields what it found.
    ///
    /// A batch that concerns anything but the record alone yields ``LockChange/unknown``: a liveness event can mean
    /// that the holder died, and the kernel queues that event a moment *before* it drops the dead holder's `flock`,
    /// so a probe made at once on this thread could still find it held; the elector's own read, made a little
    /// later, is the one that decides (as it did before this feed carried records). Liveness events are rare: a
    /// candidate dying, or the sweep after a takeover, never a renewal.
    static func startRecordFeed(paths: LockPaths, reader: RecordReader) -> AsyncStream<LockChange>? {
        start(paths: paths) { batch in batch.other ? .unknown : reader.change() }
    }

    /// Starts a subscription that yields `element(batch)` for every batch of relevant events; `element` runs on the
    /// feed thread and must not throw or trap.
    private static func start<Element: Sendable>(
        paths: LockPaths, _ element: @escaping @Sendable (Batch) -> Element
    ) -> AsyncStream<Element>? {
        let inotify = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard inotify >= 0 else { return nil }
        let directoryMask = UInt32(
            IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF
                | IN_ONLYDIR)
        let directoryWatch = inotify_add_watch(inotify, paths.directory, directoryMask)
        guard directoryWatch >= 0 else {
            _ = close(inotify)
            return nil
        }
        let membersMask = UInt32(IN_CLOSE_WRITE | IN_DELETE | IN_ONLYDIR | IN_DONT_FOLLOW)
        let membersWatch = inotify_add_watch(inotify, paths.members, membersMask)
        let stop = LinuxSymbols.eventfd()
        guard stop >= 0 else {
            _ = close(inotify)
            return nil
        }
        let control = FeedControl(stopFD: stop)
        let (stream, continuation) = AsyncStream.makeStream(of: Element.self, bufferingPolicy: .bufferingNewest(1))
        continuation.onTermination = { _ in control.stop() }

        let recordName = paths.name
        let membersName = (paths.members as NSString).lastPathComponent
        let membersPath = paths.members
        let thread = Thread {
            var watcher = Watcher(
                inotify: inotify, directoryWatch: directoryWatch, membersWatch: membersWatch,
                recordName: recordName, membersName: membersName, membersPath: membersPath, membersMask: membersMask)
            watcher.run(stop: control.stopFD) { batch in continuation.yield(element(batch)) }
            _ = close(inotify)
            continuation.finish()
            _ = control  // keeps the eventfd open until both this thread and onTermination are done
        }
        thread.name = "FileLock inotify \(paths.record)"
        thread.start()
        return stream
    }
}

/// Owns the eventfd that stops a feed thread; closes it once nobody can signal it any more.
private final class FeedControl: Sendable {
    let stopFD: Int32
    init(stopFD: Int32) { self.stopFD = stopFD }
    func stop() { LinuxSymbols.signal(stopFD) }
    deinit { _ = close(stopFD) }
}

private struct Watcher {
    let inotify: Int32
    let directoryWatch: Int32
    var membersWatch: Int32
    let recordName: String
    let membersName: String
    let membersPath: String
    let membersMask: UInt32

    /// Polls until `stop` is signalled or polling fails, calling `changed` for every batch of events
    /// that concern the record or the liveness files (all events pending when it woke up: coalesced).
    mutating func run(stop: Int32, changed: (InotifyChangeFeed.Batch) -> Void) {
        let bufferSize = 64 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer { buffer.deallocate() }
        var fds = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0), pollfd(fd: stop, events: Int16(POLLIN), revents: 0)]
        while true {
            let ready = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, 2, -1) }
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[1].revents != 0 { return }
            guard fds[0].revents & Int16(POLLIN) != 0 else {
                if fds[0].revents != 0 { return }  // POLLERR / POLLNVAL
                continue
            }
            var batch = InotifyChangeFeed.Batch()
            while true {
                let n = read(inotify, buffer.baseAddress, bufferSize)
                if n < 0 {
                    if errno == EINTR { continue }
                    break  // EAGAIN: drained
                }
                if n == 0 { break }
                parse(UnsafeRawBufferPointer(rebasing: buffer[..<n]), into: &batch)
            }
            if !batch.isEmpty { changed(batch) }
        }
    }

    /// Notes in `batch` what the events in `events` concern: the record, or something else relevant.
    private mutating func parse(_ events: UnsafeRawBufferPointer, into batch: inout InotifyChangeFeed.Batch) {
        var offset = 0
        let header = 16  // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[]; }
        while offset + header <= events.count {
            let wd = events.loadUnaligned(fromByteOffset: offset, as: Int32.self)
            let mask = events.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let length = Int(events.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            let nameBytes = events[(offset + header)..<min(events.count, offset + header + length)]
            let name = String(decoding: nameBytes.prefix(while: { $0 != 0 }), as: UTF8.self)
            offset += header + length

            if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                batch.other = true
            } else if wd == directoryWatch {
                if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 {
                    batch.other = true
                } else if name == recordName {
                    batch.record = true
                } else if name == membersName, membersWatch < 0, mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 {
                    membersWatch = inotify_add_watch(inotify, membersPath, membersMask)
                    batch.other = true
                }
            } else if wd == membersWatch {
                if mask & UInt32(IN_IGNORED) != 0 { membersWatch = -1 }  // members directory removed
                batch.other = true
            }
        }
    }
}
