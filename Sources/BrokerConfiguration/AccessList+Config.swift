import BrokerPolicy

extension AccessList {
    /// The principals of one setting (`admins`, `instances.NAME.clients`), each checked against
    /// the system's users and groups; an unknown name is a configuration error naming the setting.
    public static func resolve(_ principals: [Principal], file: String, key: String) throws(ConfigError) -> AccessList {
        do {
            return try AccessList(resolving: principals)
        } catch {
            throw ConfigError(file: file, key: key, error.description)
        }
    }
}
