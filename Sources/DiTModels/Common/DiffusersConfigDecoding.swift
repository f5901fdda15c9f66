/// Decoding of diffusers `config.json` fields with the constructor's defaults: an absent key takes the
/// default, and for an optional field an explicit `null` means None (nil), as `register_to_config`
/// records it.
extension KeyedDecodingContainer {
    /// The value at `key`; the default when the key is absent (or null, for a non-optional field).
    func diffusersValue<T: Decodable>(_ key: Key, default fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }

    /// An optional field: the default when the key is absent, nil when it is `null`.
    func diffusersOptional<T: Decodable>(_ key: Key, default fallback: T?) throws -> T? {
        guard contains(key) else { return fallback }
        return try decodeIfPresent(T.self, forKey: key)
    }
}
