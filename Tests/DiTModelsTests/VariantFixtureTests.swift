import Foundation
import Testing
import DiTHarness
@testable import DiTModels
import TestSupport

/// `teacache verify` on extra fixture folders of the FORMAT.md format with other shapes and options:
/// batch 2, a non-square FLUX grid, FLUX without guidance, batch-2 TangoFlux, Wan with batch 2, with a
/// temporal patch of 2, Wan2.1 I2V with 7 and with 512 text tokens (the two sides of diffusers' `T − 512`
/// context split), FLF2V (`pos_embed_seq_len`), and `qk_norm: null`.
///
/// They were generated from diffusers 0.42.1 (torch 2.15 CPU, float32) outside the repository by a
/// generator that reproduces the public fixtures bit for bit; see Tests/Fixtures/variants/README.md.
@Suite struct VariantFixtureTests {
    static let root = Fixtures.root.appendingPathComponent("variants")

    static var folders: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [])
            .filter { FileManager.default.fileExists(atPath: root.appendingPathComponent($0).appendingPathComponent("config.json").path) }
            .sorted()
    }

    @Test func variantsArePresent() {
        #expect(Self.folders.count >= 10, "expected the variant fixture folders under \(Self.root.path)")
    }

    @Test(arguments: folders)
    func variantPasses(_ name: String) throws {
        let report = try FixtureVerifier.verify(folder: Self.root.appendingPathComponent(name))
        #expect(report.passed, "\(name):\n\(report.lines.joined(separator: "\n"))")
    }
}
