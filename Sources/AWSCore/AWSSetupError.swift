/// A start-up problem of an AWS instance; `setting` names the configuration key it is about.
public struct AWSSetupError: Error, Sendable, CustomStringConvertible {
    public var setting: String
    public var message: String
    public var description: String { message }

    public init(setting: String, message: String) {
        self.setting = setting
        self.message = message
    }
}
