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

    /// The value of `key`, or `fallback` when absent; `null` is an error, for the fields diffusers cannot
    /// build a model with None.
    func diffusersRequired<T: Decodable>(_ key: Key, _ fallback: T) throws -> T {
        guard contains(key) else { return fallback }
        guard let v = try decodeIfPresent(T.self, forKey: key) else {
            throw DecodingError.valueNotFound(T.self, .init(codingPath: codingPath + [key],
                debugDescription: "\(key.stringValue) cannot be null: diffusers cannot build the model with None"))
        }
        return v
    }

    /// A flag diffusers tests for truth: `fallback` when absent, false for `null`.
    func diffusersFlag(_ key: Key, _ fallback: Bool) throws -> Bool {
        contains(key) ? try decodeIfPresent(Bool.self, forKey: key) ?? false : fallback
    }
}
