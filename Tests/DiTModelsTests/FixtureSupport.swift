import Foundation
import Safetensors
import Tensors

/// Locations of the reference fixtures copied into the repository (Tests/Fixtures/<family>/).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static func folder(_ family: String) -> URL { root.appendingPathComponent(family) }

    static func tensors(_ family: String, _ file: String) throws -> [String: Tensor] {
        try SafetensorsFile(contentsOf: folder(family).appendingPathComponent(file)).loadAll()
    }
}
