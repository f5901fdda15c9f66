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

/// |a − b| ≤ tol · max(|b|, 1e-300): relative comparison that also handles exact zeros.
func relativelyClose(_ a: Double, _ b: Double, _ tol: Double) -> Bool {
    abs(a - b) <= tol * max(abs(b), 1e-300)
}
