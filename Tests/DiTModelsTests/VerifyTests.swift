import Foundation
import Safetensors
import Testing
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// `teacache verify` on the FLUX and TangoFlux fixtures, and on deliberately corrupted copies.
@Suite struct VerifyTests {
    @Test(arguments: ["flux", "tangoflux"])
    func fixturePasses(family: String) throws {
        let report = try FixtureVerifier.verify(folder: Fixtures.folder(family))
        #expect(report.family == family)
        #expect(report.passed, "\(report.lines.joined(separator: "\n"))")
        // Every kind of check ran: 3 forward tensors, schedule, uncached latent, decisions, rel_l1,
        // rescaled/accumulated and the cached latent of the one record.
        #expect(report.checks.count == 9)
        #expect(report.lines.last == "verify \(family): PASS")
    }

    /// Copies a fixture folder to a temporary directory, letting `edit` rewrite one safetensors file.
    static func corruptedCopy(
        _ family: String, file: String, _ edit: (inout [String: Tensor]) throws -> Void
    ) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("verify-\(family)-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: Fixtures.folder(family), to: dir)
        var tensors = try SafetensorsFile(contentsOf: dir.appendingPathComponent(file)).loadAll()
        try edit(&tensors)
        var writer = SafetensorsWriter()
        for (name, t) in tensors { try writer.add(t, named: name) }
        try writer.write(to: dir.appendingPathComponent(file))
        return dir
    }

    @Test func scaledOutputFails() throws {
        let dir = try Self.corruptedCopy("flux", file: "forward.safetensors") { t in
            t["output"] = try #require(t["output"]) * 1.001   // rel L2 1e-3: ten times the tolerance
        }
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try FixtureVerifier.verify(folder: dir)
        #expect(!report.passed)
        #expect(report.checks.filter { !$0.passed }.map(\.name) == ["forward output"])
        #expect(report.lines.last == "verify flux: FAIL")
    }

    @Test func alteredCachedLatentFails() throws {
        let dir = try Self.corruptedCopy("tangoflux", file: "sampling.safetensors") { t in
            // The uncached final latent in place of the cached one: off by the cache's own effect (~6e-3).
            t["latent.final_cached"] = t["latent.final_uncached"]
        }
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = try FixtureVerifier.verify(folder: dir)
        #expect(report.checks.filter { !$0.passed }.map(\.name) == ["sampling default final cached"])
    }

    @Test func missingFileIsAnError() throws {
        let dir = try Self.corruptedCopy("flux", file: "forward.safetensors") { _ in }
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.removeItem(at: dir.appendingPathComponent("sampling.json"))
        #expect(throws: VerifyError.self) { try FixtureVerifier.verify(folder: dir) }
    }

    /// A counter period or retention count too large for `Int` used to trap in `Int(Double)`.
    @Test(arguments: [("flux", "counter_period"), ("wan21", "counter_period"), ("wan21", "ret_steps")])
    func hugeCounterValuesAreAnError(family: String, key: String) throws {
        let dir = try Self.corruptedCopy(family, file: "forward.safetensors") { _ in }
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("sampling.json")
        let text = try String(contentsOf: url, encoding: .utf8)
        let edited = text.replacingOccurrences(of: #""\#(key)": [0-9]+"#, with: "\"\(key)\": 1e300",
                                               options: .regularExpression)
        #expect(edited != text)
        try edited.write(to: url, atomically: true, encoding: .utf8)
        #expect(throws: VerifyError.self) { try FixtureVerifier.verify(folder: dir) }
    }
}
