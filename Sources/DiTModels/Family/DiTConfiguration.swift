import Foundation

/// The configuration of one diffusers transformer class, decoded from its `config.json`.
///
/// Field names and defaults are diffusers'; every field that changes a shape or the computation is
/// honoured, and ``validate()`` rejects values the model cannot run with a typed error naming the field.
/// Conforming types get ``parse(_:)``, ``parse(_:className:)`` and ``load(_:)`` for free.
public protocol DiTConfiguration: Sendable, Equatable, Decodable {
    /// The diffusers class names this configuration describes (`FluxTransformer2DModel`, ...).
    static var classNames: [String] { get }

    /// Throws ``ModelLoadError/unsupportedConfig(field:value:reason:)`` for the first value the model
    /// cannot run with.
    func validate() throws(ModelLoadError)
}

extension DiTConfiguration {
    /// Decodes and validates the configuration object `body` (already unwrapped by ``ModelConfigFile``)
    /// of a file that names `className`.
    ///
    /// - Throws: ``ModelLoadError/wrongClass(expected:got:)`` when the file describes another class,
    ///   `malformedConfig` for JSON problems, `unsupportedConfig` for values ``validate()`` rejects.
    public static func parse(_ body: Data, className: String) throws(ModelLoadError) -> Self {
        guard classNames.contains(className) else { throw .wrongClass(expected: classNames, got: className) }
        let config = try ModelConfigFile.decode(Self.self, from: body)
        try config.validate()
        return config
    }

    /// Reads and validates a configuration from `config.json` bytes (the fixtures' wrapped
    /// `{"class", "config"}` form, a benchmark file, or a plain diffusers config with `_class_name`).
    public static func parse(_ data: Data) throws(ModelLoadError) -> Self {
        let (className, body) = try ModelConfigFile.parse(data)
        return try parse(body, className: className)
    }

    /// Reads and validates the `config.json` at `url` (see ``parse(_:)``).
    public static func load(_ url: URL) throws(ModelLoadError) -> Self {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw .unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        return try parse(data)
    }
}
