import Foundation
import Safetensors
import Tensors

/// The reference fixtures copied into the repository (`Tests/Fixtures`, FORMAT.md), found relative to
/// this source file so every test target reads the same folder.
public enum Fixtures {
    /// `Tests/Fixtures`.
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()   // TestSupport
        .deletingLastPathComponent()   // Tests
        .appendingPathComponent("Fixtures")

    /// `Tests/Fixtures/<name>` (a family folder, or `variants/<name>`, `policies/<name>`).
    public static func folder(_ name: String) -> URL { root.appendingPathComponent(name) }

    /// `Tests/Fixtures/<name>/<file>`.
    public static func url(_ name: String, _ file: String) -> URL {
        folder(name).appendingPathComponent(file)
    }

    /// Every tensor of `Tests/Fixtures/<name>/<file>`.
    public static func tensors(_ name: String, _ file: String) throws -> [String: Tensor] {
        try SafetensorsFile(contentsOf: url(name, file)).loadAll()
    }
}
