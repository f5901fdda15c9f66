/// Reading a diffusers `config.json` field the way the constructor sees it: an absent key takes the
/// constructor's default, and `null` means `None`.
extension KeyedDecodingContainer {
    /// The value of `key`, or `fallback` when the key is absent or `null` (a field whose `None` means
    /// the default).
    func value<T: Decodable>(_ key: Key, default fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }

    /// An optional field: `fallback` when the key is absent, nil when it is `null`, else its value.
    func optional<T: Decodable>(_ key: Key, default fallback: T?) throws -> T? {
        guard contains(key) else { return fallback }
        return try decodeIfPresent(T.self, forKey: key)
    }
}
