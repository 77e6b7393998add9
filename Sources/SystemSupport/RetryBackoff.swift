/// The pause before retry `attempt` (1, 2, …) of a call to a key service: exponential backoff
/// with full jitter (the AWS SDKs' standard mode), random in 0…min(cap, base × 2^attempt).
public enum RetryBackoff {
    public static let baseMilliseconds = 100
    public static let capMilliseconds = 5_000

    public static func pauseMilliseconds(attempt: Int) -> Int {
        Int.random(in: 0...min(capMilliseconds, baseMilliseconds << min(max(attempt, 0), 16)))
    }
}
