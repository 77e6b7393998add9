/// A start-up problem of an AWS instance; `setting` names the configuration key it is about.
public struct AWSSetupError: Error, Sendable, CustomStringConvertible {
    public var setting: String
    public var message: String
    /// True when a later start may succeed without a change (a metadata service that did not
    /// answer); false when the configuration must change.
    public var isTransient = false
    public var description: String { message }
}
