/// Runs `body` for every element with at most `limit` calls in flight (at least one), and returns
/// the results in the elements' order. Key warm-up and rewrap use it, so a store with 100,000
/// versions never has 100,000 KMS calls or tasks at once.
public func mapWithBoundedConcurrency<Element: Sendable, Result: Sendable>(
    _ elements: [Element], limit: Int, _ body: @escaping @Sendable (Element) async -> Result
) async -> [Result] {
    guard !elements.isEmpty else { return [] }
    return await withTaskGroup(of: (Int, Result).self) { group in
        var results = [Result?](repeating: nil, count: elements.count)
        var next = 0
        func startNext() {
            guard next < elements.count else { return }
            let index = next
            let element = elements[index]
            next += 1
            group.addTask { (index, await body(element)) }
        }
        for _ in 0..<max(1, limit) { startNext() }
        for await (index, result) in group {
            results[index] = result
            startNext()
        }
        return results.map { $0! }
    }
}
