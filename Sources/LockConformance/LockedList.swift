import Synchronization

/// A thread-safe append-only list.
final class LockedList<Element: Sendable>: Sendable {
    private let items = Mutex<[Element]>([])
    func append(_ element: Element) { items.withLock { $0.append(element) } }
    var all: [Element] { items.withLock { $0 } }
    func drain() -> [Element] { items.withLock { items in defer { items = [] }; return items } }
}
