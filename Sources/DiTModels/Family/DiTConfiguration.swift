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
    /// `body` is the configuration object itself; a whole file in the fixtures' `{"class", "config"}`
    /// form belongs to ``parse(_:)`` and is refused here (its keys would otherwise read as an all-default
    /// configuration).
    /// - Throws: ``ModelLoadError/wrongClass(expected:got:)`` when `className` (or the object's own
    ///   `_class_name`) is another class, `malformedConfig` for JSON problems and for a wrapped file,
    ///   `unsupportedConfig` for values ``validate()`` rejects.
    public static func parse(_ body: Data, className: String) throws(ModelLoadError) -> Self {
        guard classNames.contains(className) else { throw .wrongClass(expected: classNames, got: className) }
        try checkConfigurationObject(body, className: className)
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
            throw .unreadableFile(path: url.path, reason: FileProblem.describe(url))
        }
        return try parse(data)
    }

    /// Refuses a body that is not a JSON object, is a whole wrapped file, or names another class.
    private static func checkConfigurationObject(_ body: Data, className: String) throws(ModelLoadError) {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: body) } catch {
            throw .malformedConfig(reason: "not valid JSON (\(error.localizedDescription))")
        }
        guard let dict = object as? [String: Any] else {
            throw .malformedConfig(reason: "the configuration must be a JSON object")
        }
        if dict["class"] != nil, dict["config"] != nil {
            throw .malformedConfig(reason: "this is a whole {\"class\", \"config\"} file; pass it to parse(_:) "
                                   + "(or its \"config\" object to parse(_:className:))")
        }
        if let own = dict["_class_name"] {
            guard let name = own as? String else { throw .malformedConfig(reason: "_class_name must be a string") }
            guard name == className else { throw .wrongClass(expected: [className], got: name) }
        }
    }
}
