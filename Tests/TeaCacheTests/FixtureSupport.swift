import Foundation
import TestSupport

/// The sampling schedule and recorded distances of a fixture's `sampling.json` (FORMAT.md §1), read with
/// a decoder of its own so the core's tests need no model family: only the fields the core checks.
struct FixtureSchedule: Decodable {
    struct CFG: Decodable {
        var guidanceScale: Float
        enum CodingKeys: String, CodingKey { case guidanceScale = "guidance_scale" }
    }
    struct Record: Decodable {
        struct Call: Decodable {
            var relL1: Double?
            enum CodingKeys: String, CodingKey { case relL1 = "rel_l1" }
        }
        var calls: [Call]
    }
    var timestepConvention: String
    var cfg: CFG?
    var numSteps: Int?
    var modelCalls: Int?
    var sigmas: [Double]?
    var dt: [Double]?
    var timesteps: [Double]?
    var records: [Record]

    enum CodingKeys: String, CodingKey {
        case cfg, sigmas, dt, timesteps, records
        case timestepConvention = "timestep_convention", numSteps = "num_steps", modelCalls = "model_calls"
    }

    /// The `sampling.json` of every family folder under `Tests/Fixtures`, sorted by folder name.
    static func all() throws -> [(name: String, schedule: FixtureSchedule)] {
        let names = try FileManager.default.contentsOfDirectory(atPath: Fixtures.root.path).sorted()
        var out: [(String, FixtureSchedule)] = []
        for name in names {
            let url = Fixtures.url(name, "sampling.json")
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            out.append((name, try JSONDecoder().decode(FixtureSchedule.self, from: Data(contentsOf: url))))
        }
        return out
    }

    /// The `sampling.json` of `Tests/Fixtures/<name>`.
    static func named(_ name: String) throws -> FixtureSchedule {
        try JSONDecoder().decode(FixtureSchedule.self, from: Data(contentsOf: Fixtures.url(name, "sampling.json")))
    }
}

import TeaCache

extension TeaCachePreset {
    /// TeaCache4FLUX's published values, written out here so the core's tests need no model family
    /// (DiTModels' `TeaCachePreset.flux` holds the same numbers; PresetTests there checks them).
    static let fluxReference = TeaCachePreset(
        reference: "flux", [4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01],
        defaultThreshold: 0.6, speedups: [(0.25, 1.5), (0.4, 1.8), (0.6, 2.0), (0.8, 2.25)],
        modulatedInput: "transformer_blocks[0].norm1(h_in, emb=temb)[0]", provenance: "TeaCache4FLUX/teacache_flux.py")
}
