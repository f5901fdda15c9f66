import DiTModels
import Foundation
import Testing
@testable import TeaCache

enum Fixtures {
    /// `Tests/Fixtures`, found relative to this source file.
    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures")
    }

    /// The `sampling.json` of every family folder under `Tests/Fixtures`, sorted by folder name (decoded
    /// by DiTModels' fixture reader, the one `teacache verify` uses).
    static func samplingDescriptions() throws -> [(name: String, sampling: SamplingDescription)] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        var out: [(String, SamplingDescription)] = []
        for name in names {
            let url = directory.appendingPathComponent(name).appendingPathComponent("sampling.json")
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            out.append((name, try JSONDecoder().decode(SamplingDescription.self, from: Data(contentsOf: url))))
        }
        return out
    }
}

/// |a − b| ≤ tol · max(|b|, 1e-300): relative comparison that also handles exact zeros.
func relativelyClose(_ a: Double, _ b: Double, _ tol: Double) -> Bool {
    abs(a - b) <= tol * max(abs(b), 1e-300)
}
