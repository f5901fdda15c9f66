import Foundation

/// Reads a diffusers `config.json`, either the fixtures' wrapped form
/// `{"class": ..., "config": {...}}` or a plain diffusers config with `_class_name`.
public enum ModelConfigFile {
    /// The diffusers class name and the raw configuration object bytes.
    public static func read(_ url: URL) throws(ModelLoadError) -> (className: String, config: Data) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw .unreadableFile(path: url.path, reason: FileProblem.describe(url))
        }
        return try parse(data)
    }

    /// Parses config bytes (see ``read(_:)``).
    public static func parse(_ data: Data) throws(ModelLoadError) -> (className: String, config: Data) {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw .malformedConfig(reason: "not valid JSON (\(error.localizedDescription))")
        }
        guard let dict = object as? [String: Any] else { throw .malformedConfig(reason: "top level must be a JSON object") }
        if let cls = dict["class"] as? String, let cfg = dict["config"] as? [String: Any] {
            return (cls, try reencode(cfg))
        }
        if let cls = dict["_class_name"] as? String {
            return (cls, try reencode(dict))
        }
        throw .malformedConfig(reason: "expected {\"class\", \"config\"} or a diffusers config with \"_class_name\"")
    }

    /// Decodes a configuration object into `T`, turning decoding failures into a readable error.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(ModelLoadError) -> T {
        do { return try JSONDecoder().decode(T.self, from: data) } catch let DecodingError.typeMismatch(_, ctx) {
            throw .malformedConfig(reason: "wrong type at \(path(ctx)): \(ctx.debugDescription)")
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw .malformedConfig(reason: "missing field \(key.stringValue) at \(path(ctx))")
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw .malformedConfig(reason: "null value at \(path(ctx))")
        } catch {
            throw .malformedConfig(reason: "\(error)")
        }
    }

    private static func path(_ ctx: DecodingError.Context) -> String {
        let p = ctx.codingPath.map(\.stringValue).joined(separator: ".")
        return p.isEmpty ? "top level" : p
    }

    private static func reencode(_ object: [String: Any]) throws(ModelLoadError) -> Data {
        do { return try JSONSerialization.data(withJSONObject: object) } catch {
            throw .malformedConfig(reason: "\(error)")
        }
    }
}
