import Foundation
import Testing
@testable import TeaCache

/// The decoded `sampling.json` of one fixture family (FORMAT.md §1, "sampling.json").
struct SamplingFixture: Decodable {
    struct Call: Decodable {
        var call: Int
        var step: Int
        var cfg_branch: String
        var counter: Int
        var cache_key: Int?
        var forced: Bool
        var rel_l1: Double?
        var rescaled: Double?
        var accumulated: Double?
        var accumulator_after: Double
        var decision: String
    }
    struct State: Decodable {
        var kind: String
        var counter_period: Int
        var ret_steps: Int?
        var cutoff_steps: Int?
    }
    struct Record: Decodable {
        var name: String
        var coefficients: [Double]
        var threshold: Double
        var skipped_calls: Int
        var computed_calls: Int
        var teacache_state: State
        var calls: [Call]
    }
    struct Velocity: Decodable {
        var sign: Int
        var channels: String
    }
    struct CFG: Decodable {
        var guidance_scale: Double
        var call_order: [String]
    }
    var family: String
    var num_steps: Int
    var model_calls: Int
    var timestep_convention: String
    var velocity: Velocity
    var cfg: CFG?
    var sigmas: [Double]
    var dt: [Double]
    var timesteps: [Double]
    var records: [Record]
}

enum Fixtures {
    /// `Tests/Fixtures`, found relative to this source file.
    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures")
    }

    /// Every family folder under `Tests/Fixtures` holding a `sampling.json`, sorted by name.
    static func samplingFamilies() throws -> [(name: String, fixture: SamplingFixture)] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        var out: [(String, SamplingFixture)] = []
        for name in names {
            let url = directory.appendingPathComponent(name).appendingPathComponent("sampling.json")
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            out.append((name, try JSONDecoder().decode(SamplingFixture.self, from: Data(contentsOf: url))))
        }
        return out
    }
}

/// |a − b| ≤ tol · max(|b|, 1e-300): relative comparison that also handles exact zeros.
func relativelyClose(_ a: Double, _ b: Double, _ tol: Double) -> Bool {
    abs(a - b) <= tol * max(abs(b), 1e-300)
}
